//go:build e2e

package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The topology rules on the real API server, with serve --inventory: a
// gateway leg bound to another Gateway than the configured one is refused
// (EGR601); one bound to the configured Gateway while it does not exist, or
// for a host no ServiceEntry registers, is admitted with kubectl's warnings
// (EGR602, EGR605), which go once the Gateway and the ServiceEntry are there.
func TestTopology(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/topology-gw}
exemptNamespaces: [kube-system]
allow:
- hosts: [api.topology.example]
  ports: [80]
`)
	vs := func(gateway string) string {
		return write("vs-"+strings.ReplaceAll(gateway, "/", "-")+".yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: topology, namespace: `+inventoryNamespace+`}
spec:
  hosts: [api.topology.example]
  gateways: [mesh, `+gateway+`]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 80}}
  - match: [{gateways: [`+gateway+`], port: 80}]
    route:
    - destination: {host: api.topology.example, port: {number: 80}}
`)
	}
	gw := write("gw.yaml", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: topology-gw, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [api.topology.example]
`)
	se := write("se.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: topology, namespace: `+inventoryNamespace+`}
spec:
  hosts: [api.topology.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 80, name: http, protocol: HTTP}
`)
	env.ensureNamespace(t, "istio-system")
	env.ensureNamespace(t, inventoryNamespace)
	t.Cleanup(func() {
		for _, f := range []string{gw, se} {
			env.kubectl("delete", "--ignore-not-found", "-f", f)
		}
	})
	g := env.startGuard(t, cfg, "", "--inventory")
	env.useGuard(t, g)

	if r := env.kubectl("apply", "--dry-run=server", "-f", vs("egress-gateway")); r.Err == nil || !strings.Contains(r.Output(), "EGR601") ||
		!strings.Contains(r.Output(), `binds to egress-gateway, not to the egress gateway's Gateway "istio-system/topology-gw"`) {
		t.Fatalf("a gateway leg on another Gateway: want EGR601, got:\n%s", r)
	}
	bound := vs("istio-system/topology-gw")
	r := env.kubectl("apply", "--dry-run=server", "-f", bound)
	if r.Err != nil {
		t.Fatalf("existence is not enforced at admission: refused:\n%s", r)
	}
	for _, want := range []string{`EGR602: spec.http[1]: the gateway leg to external host "api.topology.example" binds to Gateway "istio-system/topology-gw", which does not exist`, "EGR605"} {
		if !strings.Contains(r.Output(), want) {
			t.Errorf("before the Gateway and the ServiceEntry: want a warning with %s, got:\n%s", want, r)
		}
	}
	for _, f := range []string{gw, se} {
		if r := env.kubectl("apply", "-f", f); r.Err != nil {
			t.Fatalf("applying %s:\n%s", f, r)
		}
	}
	eventually(t, 30*time.Second, "the Gateway and the ServiceEntry reach the model", func() error {
		r := env.kubectl("apply", "--dry-run=server", "-f", bound)
		if r.Err != nil {
			t.Fatalf("refused:\n%s", r)
		}
		if strings.Contains(r.Output(), "EGR60") {
			return errors.New(r.Output())
		}
		return nil
	})
}
