//go:build e2e

package e2e

import (
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func TestProbe(t *testing.T) {
	_ = envtest.Environment{}
	_ = admissionv1.MutatingWebhookConfiguration{}
	_ = corev1.Namespace{}
	var _ *kubernetes.Clientset
}
