package harness

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Certificates is cert-manager's Certificate resource.
var Certificates = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// InjectCAFromAnnotation asks cert-manager's cainjector to write the CA of a
// Certificate (namespace/name) into the annotated object.
const InjectCAFromAnnotation = "cert-manager.io/inject-ca-from"

// WaitCertificate waits until cert-manager reports the Certificate
// namespace/name Ready, and returns the Secret it was issued into (tls.crt,
// tls.key, ca.crt).
func (c *ControlPlane) WaitCertificate(ctx context.Context, namespace, name string, timeout time.Duration) (*corev1.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		secret, state, err := c.certificateSecret(ctx, namespace, name)
		if err != nil {
			return nil, err
		}
		if secret != nil {
			return secret, nil
		}
		last = state
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("Certificate %s/%s is not Ready (%w); last state: %s", namespace, name, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// certificateSecret returns the Secret of a Ready Certificate, or nil and
// what the Certificate says while it is not Ready.
func (c *ControlPlane) certificateSecret(ctx context.Context, namespace, name string) (*corev1.Secret, string, error) {
	crt, err := c.Dynamic.Resource(Certificates).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("reading Certificate %s/%s: %w", namespace, name, err)
	}
	conditions, _, _ := unstructured.NestedSlice(crt.Object, "status", "conditions")
	state := fmt.Sprint(conditions)
	ready := false
	for _, cond := range conditions {
		m, _ := cond.(map[string]any)
		if m["type"] == "Ready" && m["status"] == "True" {
			ready = true
		}
	}
	if !ready {
		return nil, state, nil
	}
	secretName, _, _ := unstructured.NestedString(crt.Object, "spec", "secretName")
	secret, err := c.Client.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("Certificate %s/%s is Ready, but its Secret: %w", namespace, name, err)
	}
	for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"} {
		if len(secret.Data[key]) == 0 {
			return nil, "", fmt.Errorf("Certificate %s/%s is Ready, but its Secret %s has no %s", namespace, name, secretName, key)
		}
	}
	return secret, state, nil
}

// ParseCertificatePEM parses the first certificate of a PEM bundle.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
