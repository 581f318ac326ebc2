//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// The settings that change the mesh for everyone are the platform's: written
// in an application namespace by someone else, kubectl apply is refused with
// the rule's code and a message saying who may; the same objects in a
// platform namespace, or from a platform group, are admitted.
func TestPlatformOnlySettings(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway}
exemptNamespaces: [kube-system]
platform:
  namespaces: [istio-system]
  groups: [platform-admins]
`)
	objects := []struct{ code, kind, manifest string }{
		{"EGR401", "Sidecar", `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: anything-goes, namespace: NS}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
`},
		{"EGR402", "EnvoyFilter", `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: direct-cluster, namespace: NS}
spec:
  workloadSelector: {labels: {app: curl}}
  configPatches:
  - applyTo: CLUSTER
    patch:
      operation: ADD
      value: {name: direct, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED}
`},
		{"EGR403", "WasmPlugin", `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: plugin, namespace: NS}
spec:
  url: oci://registry.example/plugin:1.0
`},
		{"EGR404", "ProxyConfig", `apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: proxies, namespace: NS}
spec:
  concurrency: 2
`},
	}
	env.ensureNamespace(t, "istio-system")
	env.ensureNamespace(t, inventoryNamespace)
	env.bindClusterAdmin(t, "platform-admins")
	g := env.startGuard(t, cfg, "")
	env.useGuard(t, g)

	for _, o := range objects {
		t.Run(o.kind, func(t *testing.T) {
			file := func(ns string) string {
				return write(o.kind+"-"+ns+".yaml", strings.ReplaceAll(o.manifest, "NS", ns))
			}
			app := file(inventoryNamespace)
			r := env.kubectl("apply", "--dry-run=server", "-f", app)
			if r.Err == nil || !strings.Contains(r.Output(), o.code) || !strings.Contains(r.Output(), "only the platform's namespaces (istio-system), users (none) or groups (platform-admins)") {
				t.Errorf("%s in an application namespace: want %s naming who may, got:\n%s", o.kind, o.code, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "-f", file("istio-system")); r.Err != nil {
				t.Errorf("%s in the platform's namespace: refused:\n%s", o.kind, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "--as", "alice", "--as-group", "platform-admins", "-f", app); r.Err != nil {
				t.Errorf("%s from a platform group: refused:\n%s", o.kind, r)
			}
		})
	}
}
