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
  users: [platform-bot]
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
	env.bindClusterAdmin(t, "group", "platform-admins")
	env.bindClusterAdmin(t, "user", "platform-bot")
	g := env.startGuard(t, cfg, "")
	env.useGuard(t, g)

	for _, o := range objects {
		t.Run(o.kind, func(t *testing.T) {
			file := func(ns string) string {
				return write(o.kind+"-"+ns+".yaml", strings.ReplaceAll(o.manifest, "NS", ns))
			}
			app := file(inventoryNamespace)
			r := env.kubectl("apply", "--dry-run=server", "-f", app)
			if r.Err == nil || !strings.Contains(r.Output(), o.code) || !strings.Contains(r.Output(), "only the platform's namespaces (istio-system), users (platform-bot) or groups (platform-admins)") {
				t.Errorf("%s in an application namespace: want %s naming who may, got:\n%s", o.kind, o.code, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "-f", file("istio-system")); r.Err != nil {
				t.Errorf("%s in the platform's namespace: refused:\n%s", o.kind, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "--as", "alice", "--as-group", "platform-admins", "-f", app); r.Err != nil {
				t.Errorf("%s from a platform group: refused:\n%s", o.kind, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "--as", "platform-bot", "-f", app); r.Err != nil {
				t.Errorf("%s from a platform user: refused:\n%s", o.kind, r)
			}
		})
	}
}

// Routing in Istio's root namespace applies to the whole mesh: where the
// platform has not listed the root namespace as its own, a VirtualService or
// DestinationRule there exported to the mesh, or a Sidecar without a
// workloadSelector, is refused (EGR405) unless a platform user or group
// writes it; the same objects exported to their own namespace only, or
// selecting workloads, are admitted.
func TestRootNamespaceIsThePlatforms(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-egress, service: istio-egressgateway}
exemptNamespaces: [kube-system]
platform:
  rootNamespace: istio-system
  namespaces: [istio-egress]
  users: [platform-bot]
  groups: [platform-admins]
`)
	objects := []struct{ kind, meshWide, local string }{
		{"VirtualService", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-timeout, namespace: istio-system}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - timeout: 5s
    route:
    - destination: {host: reviews.bookinfo.svc.cluster.local}
`, "  exportTo: [.]\n"},
		{"DestinationRule", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-pool, namespace: istio-system}
spec:
  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 100}}
`, "  exportTo: [.]\n"},
		{"Sidecar", `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`, "  workloadSelector: {labels: {app: ratings}}\n"},
	}
	env.ensureNamespace(t, "istio-system")
	env.ensureNamespace(t, "istio-egress")
	env.bindClusterAdmin(t, "group", "platform-admins")
	env.bindClusterAdmin(t, "user", "platform-bot")
	g := env.startGuard(t, cfg, "")
	env.useGuard(t, g)

	for _, o := range objects {
		t.Run(o.kind, func(t *testing.T) {
			meshWide := write(o.kind+"-mesh.yaml", o.meshWide)
			r := env.kubectl("apply", "--dry-run=server", "-f", meshWide)
			want := `a ` + o.kind + ` in Istio's root namespace "istio-system" applies to the whole mesh; only the platform's namespaces (istio-egress), users (platform-bot) or groups (platform-admins) may write one`
			if r.Err == nil || !strings.Contains(r.Output(), "EGR405") || !strings.Contains(r.Output(), want) {
				t.Errorf("a mesh-wide %s in the root namespace: want EGR405 (%s), got:\n%s", o.kind, want, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "-f", write(o.kind+"-local.yaml", o.meshWide+o.local)); r.Err != nil {
				t.Errorf("a %s in the root namespace that is not mesh-wide: refused:\n%s", o.kind, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "--as", "platform-bot", "-f", meshWide); r.Err != nil {
				t.Errorf("a mesh-wide %s from a platform user: refused:\n%s", o.kind, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "--as", "alice", "--as-group", "platform-admins", "-f", meshWide); r.Err != nil {
				t.Errorf("a mesh-wide %s from a platform group: refused:\n%s", o.kind, r)
			}
		})
	}
}
