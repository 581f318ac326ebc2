//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egress-guard/egress-guard/test/harness"
)

const inventoryNamespace = "inventory-apps"

// serve --inventory: a MESH_EXTERNAL ServiceEntry anywhere in the cluster,
// here in an exempt namespace, makes its host external for the rules of
// every other object; once it is deleted the host is a cluster name again.
func TestInventory(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/egress-gateway}
exemptNamespaces: [kube-system, istio-system]
allow:
- hosts: [test.com]
`)
	se := write("se.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy-db, namespace: istio-system}
spec:
  hosts: [legacy-db]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 3306, name: mysql, protocol: TCP}
`)
	vs := write("vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy-db, namespace: `+inventoryNamespace+`}
spec:
  hosts: [legacy-db]
  tcp:
  - route:
    - destination: {host: legacy-db, port: {number: 3306}}
`)
	env.ensureNamespace(t, "istio-system")
	env.ensureNamespace(t, inventoryNamespace)
	t.Cleanup(func() {
		env.kubectl("delete", "--ignore-not-found", "-f", se)
		env.kubectl("delete", "--ignore-not-found", "-f", vs)
	})

	g := env.startGuard(t, cfg, "", "--inventory")
	env.useGuard(t, g)
	dryRun := func() error {
		if r := env.kubectl("apply", "--dry-run=server", "-f", vs); r.Err != nil {
			return errors.New(r.Output())
		}
		return nil
	}

	// A name without dots is a cluster name: nothing to say.
	if err := dryRun(); err != nil {
		t.Fatalf("before the ServiceEntry, the VirtualService is refused: %v", err)
	}
	before := inventoryGauge(t, g)

	if r := env.kubectl("apply", "-f", se); r.Err != nil {
		t.Fatalf("the ServiceEntry in the exempt namespace is refused:\n%s", r)
	}
	eventually(t, 30*time.Second, "the ServiceEntry makes legacy-db external", func() error {
		err := dryRun()
		switch {
		case err == nil:
			return errors.New("the VirtualService is admitted")
		case !strings.Contains(err.Error(), "EGR202") || !strings.Contains(err.Error(), `external host "legacy-db" is not allowed`):
			t.Fatalf("the VirtualService is refused for another reason: %v", err)
		}
		return nil
	})
	if got := inventoryGauge(t, g); got != before+1 {
		t.Errorf("egress_guard_inventory_service_entries %v after the ServiceEntry, want %v", got, before+1)
	}

	if r := env.kubectl("delete", "-f", se); r.Err != nil {
		t.Fatalf("deleting the ServiceEntry:\n%s", r)
	}
	eventually(t, 30*time.Second, "deleting the ServiceEntry makes legacy-db a cluster name again", dryRun)
	if got := inventoryGauge(t, g); got != before {
		t.Errorf("egress_guard_inventory_service_entries %v after the deletion, want %v", got, before)
	}
}

// inventoryGauge reads egress_guard_inventory_service_entries from g's
// metrics.
func inventoryGauge(t *testing.T, g *harness.Guard) float64 {
	t.Helper()
	return metricValue(t, g, "egress_guard_inventory_service_entries")
}

// metricValue reads the sample named (with its labels, as exposed) from g's
// metrics.
func metricValue(t *testing.T, g *harness.Guard, sample string) float64 {
	t.Helper()
	v, err := g.MetricValue(sample)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Deleting the VirtualService that routes an external host through the
// egress gateway, while a ServiceEntry still registers the host, is refused
// (EGR204): the sidecars would then reach the host directly. Kubernetes' own
// namespace cleanup is not held back, and once the ServiceEntry is gone the
// route may go.
func TestDeletingTheGatewayRoute(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/egress-gateway}
exemptNamespaces: [kube-system]
allow:
- hosts: [test.com]
  ports: [80]
`)
	se := write("se.yaml", testComServiceEntry(inventoryNamespace))
	vs := write("vs.yaml", testComGatewayRoute(inventoryNamespace))
	env.ensureNamespace(t, inventoryNamespace)
	t.Cleanup(func() {
		env.kubectl("delete", "--ignore-not-found", "-f", se)
		env.kubectl("delete", "--ignore-not-found", "-f", vs)
	})
	g := env.startGuard(t, cfg, "", "--inventory")
	env.useGuard(t, g)
	for _, f := range []string{se, vs} {
		if r := env.kubectl("apply", "-f", f); r.Err != nil {
			t.Fatalf("applying %s:\n%s", filepath.Base(f), r)
		}
	}
	deleteVS := func(extra ...string) harness.Result {
		return env.kubectl(append([]string{"delete", "-f", vs}, extra...)...)
	}
	eventually(t, 30*time.Second, "the inventory holds the ServiceEntry", func() error {
		if r := deleteVS("--dry-run=server"); r.Err == nil {
			return errors.New("the deletion is admitted")
		}
		return nil
	})
	r := deleteVS()
	switch {
	case r.Err == nil:
		t.Fatalf("kubectl delete of the gateway route succeeded:\n%s", r)
	case !strings.Contains(r.Output(), "EGR204") || !strings.Contains(r.Output(), `external host "test.com"`) || !strings.Contains(r.Output(), "delete the ServiceEntry first"):
		t.Fatalf("kubectl delete refused without EGR204 naming the host:\n%s", r)
	}
	if r := env.kubectl("get", "-f", vs); r.Err != nil {
		t.Fatalf("the refused VirtualService is gone:\n%s", r)
	}
	// The namespace controller, deleting a namespace's objects, is let
	// through.
	if r := deleteVS("--dry-run=server", "--as", "system:serviceaccount:kube-system:namespace-controller"); r.Err != nil {
		t.Errorf("the namespace controller's deletion is refused:\n%s", r)
	}
	if r := env.kubectl("delete", "-f", se); r.Err != nil {
		t.Fatalf("deleting the ServiceEntry:\n%s", r)
	}
	eventually(t, 30*time.Second, "without the ServiceEntry the route may go", func() error {
		if r := deleteVS(); r.Err != nil {
			return errors.New(r.Output())
		}
		return nil
	})
}

// The audit of a cluster reads its VirtualServices: a ServiceEntry for an
// allowed external host that no VirtualService routes through the egress
// gateway is found (EGR110), and is not once a two-leg route exists.
func TestAuditFindsUnroutedServiceEntries(t *testing.T) {
	write := fileWriter(t)
	const ns = "audit-routes"
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/egress-gateway}
enforcement: dryrun
allow:
- hosts: [test.com]
  ports: [80]
`)
	se := write("se.yaml", testComServiceEntry(ns))
	vs := write("vs.yaml", testComGatewayRoute(ns))
	env.ensureNamespace(t, ns)
	g := env.startGuard(t, cfg, "")
	env.useGuard(t, g)
	t.Cleanup(func() {
		env.kubectl("delete", "--ignore-not-found", "-f", vs)
		env.kubectl("delete", "--ignore-not-found", "-f", se)
	})
	unrouted := func() []string {
		t.Helper()
		var rep struct {
			Results []struct {
				Object   struct{ Kind, Name string }
				Findings []struct{ Code, Field string }
			}
		}
		out := runGuardCommand(t, "audit", "--kubeconfig", env.Kubeconfig, "-n", ns, "--config", cfg, "-o", "json")
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("audit -o json: %v\n%s", err, out)
		}
		var found []string
		for _, r := range rep.Results {
			for _, f := range r.Findings {
				if f.Code == "EGR110" {
					found = append(found, r.Object.Kind+"/"+r.Object.Name+" "+f.Field)
				}
			}
		}
		return found
	}
	if r := env.kubectl("apply", "-f", se); r.Err != nil {
		t.Fatalf("applying the ServiceEntry:\n%s", r)
	}
	if got := unrouted(); !slices.Equal(got, []string{"ServiceEntry/test-com spec.hosts[0]"}) {
		t.Errorf("the ServiceEntry alone: EGR110 findings %q, want one on spec.hosts[0]", got)
	}
	if r := env.kubectl("apply", "-f", vs); r.Err != nil {
		t.Fatalf("applying the route:\n%s", r)
	}
	if got := unrouted(); len(got) != 0 {
		t.Errorf("with the route through the gateway: EGR110 findings %q", got)
	}
}

// testComServiceEntry registers test.com:80 (HTTP) in namespace ns.
func testComServiceEntry(ns string) string {
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: test-com, namespace: ` + ns + `}
spec:
  hosts: [test.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 80, name: http, protocol: HTTP}
`
}

// testComGatewayRoute is the two-leg route of test.com:80 in namespace ns:
// mesh -> istio-system/istio-egressgateway -> test.com.
func testComGatewayRoute(ns string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: test-com-through-gateway, namespace: ` + ns + `}
spec:
  hosts: [test.com]
  gateways: [istio-system/egress-gateway, mesh]
  http:
  - match:
    - {gateways: [mesh], port: 80}
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 80}}
  - match:
    - {gateways: [istio-system/egress-gateway], port: 80}
    route:
    - destination: {host: test.com, port: {number: 80}}
`
}
