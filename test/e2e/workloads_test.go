//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

const meshNamespace = "workloads-mesh"

// Workloads in the mesh's namespaces may not take their traffic around the
// sidecar: kubectl apply of a Deployment whose pod template excludes
// outbound ranges, or of a Pod on the host's network, is refused with the
// rule's code naming the field; a platform group may; the same objects in a
// namespace outside the mesh are not the webhook's.
func TestWorkloadBypasses(t *testing.T) {
	write := fileWriter(t)
	cfg := write("config.yaml", `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway}
platform: {groups: [platform-admins]}
`)
	env.ensureNamespace(t, meshNamespace)
	if r := env.kubectl("label", "namespace", meshNamespace, "istio-injection=enabled", "--overwrite"); r.Err != nil {
		t.Fatalf("labelling the namespace:\n%s", r)
	}
	env.ensureNamespace(t, inventoryNamespace)
	env.bindClusterAdmin(t, "group", "platform-admins")
	g := env.startGuard(t, cfg, "")
	env.useGuard(t, g)

	for _, tc := range []struct {
		name, code, field, manifest string
	}{
		{"deployment", "EGR501", `spec.template.metadata.annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"]`, `apiVersion: apps/v1
kind: Deployment
metadata: {name: curl, namespace: NS}
spec:
  selector: {matchLabels: {app: curl}}
  template:
    metadata:
      labels: {app: curl}
      annotations: {traffic.sidecar.istio.io/excludeOutboundIPRanges: 0.0.0.0/0}
    spec:
      containers: [{name: curl, image: curlimages/curl}]
`},
		{"pod", "EGR509", "spec.hostNetwork", `apiVersion: v1
kind: Pod
metadata: {name: on-the-host, namespace: NS}
spec:
  hostNetwork: true
  containers: [{name: curl, image: curlimages/curl}]
`},
		{"cronjob", "EGR508", "spec.jobTemplate.spec.template.spec.containers[0].securityContext.runAsUser", `apiVersion: batch/v1
kind: CronJob
metadata: {name: as-the-proxy, namespace: NS}
spec:
  schedule: "@hourly"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: curl, image: curlimages/curl, securityContext: {runAsUser: 1337}}]
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := func(ns string) string {
				return write(tc.name+"-"+ns+".yaml", strings.ReplaceAll(tc.manifest, "NS", ns))
			}
			mesh := in(meshNamespace)
			r := env.kubectl("apply", "--dry-run=server", "-f", mesh)
			if r.Err == nil || !strings.Contains(r.Output(), tc.code) || !strings.Contains(r.Output(), tc.field) {
				t.Errorf("in the mesh: want %s on %s, got:\n%s", tc.code, tc.field, r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "--as", "alice", "--as-group", "platform-admins", "-f", mesh); r.Err != nil {
				t.Errorf("from a platform group: refused:\n%s", r)
			}
			if r := env.kubectl("apply", "--dry-run=server", "-f", in(inventoryNamespace)); r.Err != nil {
				t.Errorf("outside the mesh: refused:\n%s", r)
			}
		})
	}
	// A plain workload in the mesh is admitted.
	plain := write("plain.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: `+meshNamespace+`}
spec:
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      containers: [{name: app, image: app:1}]
`)
	if r := env.kubectl("apply", "--dry-run=server", "-f", plain); r.Err != nil {
		t.Errorf("a plain Deployment in the mesh: refused:\n%s", r)
	}
}
