package object

import (
	"errors"
	"strings"
	"testing"
)

// A workload in a file is checked against its k8s.io/api type: a value of
// the wrong type, an unknown or a repeated field is an error naming the
// field, as the API server would refuse it; in a request (lenient) the API
// server has decoded it already.
func TestCheckWorkloads(t *testing.T) {
	for _, tc := range []struct {
		name, group, kind, raw string
		field, detail          string
	}{
		{"not a list", "", "Pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":"app"}}`,
			"spec.containers", "expected []v1.Container, got string"},
		{"quoted number", "apps", "Deployment", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"app","securityContext":{"runAsUser":"1337"}}]}}}}`,
			"spec.template.spec.containers.securityContext.runAsUser", "expected int64, got string"},
		{"unknown field", "batch", "CronJob", `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"hostNetwerk":true}}}}}}`,
			"spec.jobTemplate.spec.template.spec.hostNetwerk", "unknown field"},
		{"repeated field", "apps", "DaemonSet", `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"d"},"spec":{"template":{"spec":{"hostNetwork":false,"hostNetwork":true}}}}`,
			"spec.template.spec.hostNetwork", "duplicate field"},
		{"metadata", "apps", "StatefulSet", `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"s","annotations":{"sidecar.istio.io/inject":false}}}`,
			"metadata.annotations", "expected string, got bool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.group, tc.kind, []byte(tc.raw), true)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Detail != tc.detail {
				t.Errorf("got %v, want %s: %s", err, tc.field, tc.detail)
			}
			if err := Check(tc.group, tc.kind, []byte(tc.raw), false); err != nil {
				t.Errorf("lenient: %v", err)
			}
		})
	}
	if err := Check("batch", "Job", []byte(`{"apiVersion":"batch/v1","kind":"Job"`), true); err == nil || !strings.HasPrefix(err.Error(), "not a valid object") {
		t.Errorf("truncated: %v", err)
	}
	if err := Check("", "Pod", []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"lots"}}}]}}`), true); err == nil || !strings.Contains(err.Error(), "quantities must match") {
		t.Errorf("a bad quantity: %v", err)
	}
	good := `{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"r","labels":{"app":"a"}},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"annotations":{"traffic.sidecar.istio.io/excludeOutboundPorts":"443"}},"spec":{"containers":[{"name":"a","image":"a:1","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}]}}},"status":{"replicas":1}}`
	if err := Check("apps", "ReplicaSet", []byte(good), true); err != nil {
		t.Errorf("a well-formed ReplicaSet: %v", err)
	}
}
