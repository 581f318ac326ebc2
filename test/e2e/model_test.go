//go:build e2e

package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve --inventory keeps the cluster model as data.inventory.objects: a
// platform rule that looks up the Gateway a route binds to, and the keys of
// the Secret an origination names, follows the objects as they are created
// and changed, and sees a Secret's keys, never its values.
func TestClusterModel(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/egress-gateway}
exemptNamespaces: [kube-system]
`)
	policies := filepath.Dir(write("policies/topology.rego", `package egressguard.rules.topology

deny contains {"code": "PLT010", "field": "spec.gateways", "message": sprintf("spec.gateways: no Gateway %s", [key])} if {
	input.kind.kind == "VirtualService"
	some name in input.object.spec.gateways
	name != "mesh"
	key := _key(name)
	not data.inventory.objects.Gateway[key]
}

deny contains {"code": "PLT012", "field": "spec.trafficPolicy.tls.credentialName", "message": sprintf("spec.trafficPolicy.tls.credentialName: %s lacks %v (model: %v)", [name, missing, secret])} if {
	input.kind.kind == "DestinationRule"
	name := input.object.spec.trafficPolicy.tls.credentialName
	secret := object.get(data.inventory.objects.Secret, concat("/", [data.config.gateway.namespace, name]), {"keys": []})
	missing := {"tls.crt", "tls.key"} - {k | some k in secret.keys}
	count(missing) > 0
}

_key(name) := name if contains(name, "/")

else := concat("/", [input.namespace, name])
`))
	vs := write("vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-model-gw, namespace: `+inventoryNamespace+`}
spec:
  hosts: [reviews]
  gateways: [istio-system/model-gw, mesh]
  http:
  - route:
    - destination: {host: reviews}
`)
	gw := write("gw.yaml", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: model-gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/*"]
`)
	dr := write("dr.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: originate-model, namespace: istio-system}
spec:
  host: reviews.`+inventoryNamespace+`.svc.cluster.local
  exportTo: [.]
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: model-cred, sni: reviews}
`)
	env.ensureNamespace(t, "istio-system")
	env.ensureNamespace(t, inventoryNamespace)
	t.Cleanup(func() {
		env.kubectl("delete", "--ignore-not-found", "-f", gw)
		env.kubectl("delete", "--ignore-not-found", "-n", "istio-system", "secret", "model-cred")
	})
	g := env.startGuard(t, cfg, policies, "--inventory")
	env.useGuard(t, g)
	apply := func(file string) error {
		if r := env.kubectl("apply", "--dry-run=server", "-f", file); r.Err != nil {
			return errors.New(r.Output())
		}
		return nil
	}

	if err := apply(vs); err == nil || !strings.Contains(err.Error(), "PLT010") || !strings.Contains(err.Error(), "no Gateway istio-system/model-gw") {
		t.Fatalf("before the Gateway: want PLT010, got %v", err)
	}
	if r := env.kubectl("apply", "-f", gw); r.Err != nil {
		t.Fatalf("creating the Gateway:\n%s", r)
	}
	eventually(t, 30*time.Second, "the Gateway reaches the model", func() error { return apply(vs) })

	if err := apply(dr); err == nil || !strings.Contains(err.Error(), `lacks {"tls.crt", "tls.key"}`) {
		t.Fatalf("before the Secret: want PLT012 naming both keys, got %v", err)
	}
	const value = "c2VjcmV0LXZhbHVl"
	if r := env.kubectl("create", "secret", "generic", "model-cred", "-n", "istio-system", "--from-literal=tls.crt=secret-value"); r.Err != nil {
		t.Fatalf("creating the Secret:\n%s", r)
	}
	eventually(t, 30*time.Second, "the Secret's keys reach the model", func() error {
		err := apply(dr)
		switch {
		case err == nil:
			t.Fatal("the DestinationRule is admitted with tls.key missing")
		case strings.Contains(err.Error(), `lacks {"tls.key"}`):
			if strings.Contains(err.Error(), value) || strings.Contains(err.Error(), "secret-value") {
				t.Fatalf("the Secret's value is in the model: %v", err)
			}
			if !strings.Contains(err.Error(), `"keys": ["tls.crt"]`) {
				t.Fatalf("the model's Secret lacks its keys: %v", err)
			}
			return nil
		}
		return err
	})
	patch := `{"stringData":{"tls.key":"another-secret"}}`
	if r := env.kubectl("patch", "secret", "model-cred", "-n", "istio-system", "--type=merge", "-p", patch); r.Err != nil {
		t.Fatalf("adding tls.key:\n%s", r)
	}
	eventually(t, 30*time.Second, "the Secret's new key reaches the model", func() error { return apply(dr) })

	if r := env.kubectl("delete", "-f", gw); r.Err != nil {
		t.Fatalf("deleting the Gateway:\n%s", r)
	}
	eventually(t, 30*time.Second, "the Gateway's deletion reaches the model", func() error {
		if err := apply(vs); err == nil || !strings.Contains(err.Error(), "PLT010") {
			return errors.New("the VirtualService is still admitted")
		}
		return nil
	})
	if logs, err := os.ReadFile(g.LogPath); err == nil && strings.Contains(string(logs), "another-secret") {
		t.Error("a Secret's value is in serve's log")
	}
}
