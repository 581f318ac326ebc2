//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// A kind the configuration adds to the policed kinds (here Istio's Gateway,
// which the embedded rules do not read) is sent to the webhooks, as the chart
// registers config.kinds, and a platform policy on it refuses kubectl apply;
// the same object is admitted when the kind is not policed.
func TestPolicedKindsFromTheConfiguration(t *testing.T) {
	write := fileWriter(t)
	base := `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway}
exemptNamespaces: [kube-system]
`
	withGateway := write("with-gateway.yaml", base+`kinds:
- {group: networking.istio.io, version: v1, kind: ServiceEntry, resource: serviceentries}
- {group: networking.istio.io, version: v1, kind: VirtualService, resource: virtualservices}
- {group: networking.istio.io, version: v1, kind: DestinationRule, resource: destinationrules}
- {group: networking.istio.io, version: v1, kind: Sidecar, resource: sidecars}
- {group: networking.istio.io, version: v1alpha3, kind: EnvoyFilter, resource: envoyfilters}
- {group: extensions.istio.io, version: v1alpha1, kind: WasmPlugin, resource: wasmplugins}
- {group: networking.istio.io, version: v1beta1, kind: ProxyConfig, resource: proxyconfigs}
- {group: networking.istio.io, version: v1, kind: Gateway, resource: gateways}
`)
	without := write("without.yaml", base)
	policies := filepath.Dir(write("policies/gateway.rego", `package egressguard.rules.gateway

deny contains {
	"code": "PLT101",
	"field": sprintf("spec.servers[%d].hosts", [i]),
	"message": sprintf("spec.servers[%d].hosts: a Gateway server may not take every host", [i]),
} if {
	some i, server in input.object.spec.servers
	"*" in server.hosts
}
`))
	open := write("open.yaml", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: open, namespace: `+inventoryNamespace+`}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
`)
	env.ensureNamespace(t, inventoryNamespace)
	t.Cleanup(func() { env.kubectl("delete", "--ignore-not-found", "-f", open) })
	// The webhooks get Gateways while this test runs.
	env.webhooks.Kinds = append(slices.Clone(config.DefaultKinds), config.PolicedKind{Group: "networking.istio.io", Version: "v1", Kind: "Gateway", Resource: "gateways"})
	t.Cleanup(func() {
		env.webhooks.Kinds = nil
		if err := env.webhooks.Register(context.Background(), env.webhooks.URL); err != nil {
			t.Errorf("registering the webhooks back: %v", err)
		}
	})

	g := env.startGuard(t, withGateway, policies)
	env.useGuard(t, g)
	r := env.kubectl("apply", "--dry-run=server", "-f", open)
	if r.Err == nil || !strings.Contains(r.Output(), "PLT101") || !strings.Contains(r.Output(), "spec.servers[0].hosts") {
		t.Fatalf("a Gateway taking every host, with Gateway policed: want PLT101, got:\n%s", r)
	}

	g2 := env.startGuard(t, without, policies)
	env.useGuard(t, g2)
	if r := env.kubectl("apply", "--dry-run=server", "-f", open); r.Err != nil {
		t.Fatalf("the same Gateway, Gateway not policed: refused:\n%s", r)
	}
}
