package audit

import (
	"context"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

func listed(apiVersion, kind, namespace, name string, labels map[string]string, owner *metav1.OwnerReference) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetLabels(labels)
	if owner != nil {
		u.SetOwnerReferences([]metav1.OwnerReference{*owner})
	}
	return u
}

// Workloads are listed in the mesh's namespaces alone, and only those no
// other workload controls; the Istio kinds everywhere.
func TestListObjectsWorkloads(t *testing.T) {
	yes := true
	rs := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", Controller: &yes}
	other := &metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Operator", Name: "op", Controller: &yes}
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "namespaces"}:                                   "NamespaceList",
		{Version: "v1", Resource: "pods"}:                                         "PodList",
		{Group: "apps", Version: "v1", Resource: "deployments"}:                   "DeploymentList",
		{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}: "ServiceEntryList",
	},
		listed("v1", "Namespace", "", "mesh", map[string]string{"istio-injection": "enabled"}, nil),
		listed("v1", "Namespace", "", "plain", nil, nil),
		listed("v1", "Pod", "mesh", "bare", nil, nil),
		listed("v1", "Pod", "mesh", "web-1-abc", nil, rs),
		listed("v1", "Pod", "mesh", "operated", nil, other),
		listed("v1", "Pod", "plain", "outside", nil, nil),
		listed("apps/v1", "Deployment", "mesh", "web", nil, nil),
		listed("networking.istio.io/v1", "ServiceEntry", "plain", "se", nil, nil),
	)
	kinds := []config.PolicedKind{
		{Group: "networking.istio.io", Version: "v1", Kind: "ServiceEntry", Resource: "serviceentries"},
		{Version: "v1", Kind: "Pod", Resource: "pods"},
		{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments"},
	}
	docs, err := ListObjects(context.Background(), dyn, kinds, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, d.GVK.Kind+" "+d.Namespace+"/"+d.Name)
	}
	want := []string{"Deployment mesh/web", "Pod mesh/bare", "Pod mesh/operated", "ServiceEntry plain/se"}
	if len(got) != len(want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("listed %q, want %q", got, want)
			break
		}
	}
}

// The audit knows the VirtualServices: an allowed external host that none
// routes through the egress gateway is found (EGR110); every scenario routes
// the hosts of its compliant and mutated objects, so none is found there.
func TestAuditFindsServiceEntriesWithoutGatewayRoutes(t *testing.T) {
	ctx := context.Background()
	for _, dir := range scenarioDirs(t) {
		docs, err := check.ReadPaths([]string{filepath.Join(dir, "compliant.yaml"), filepath.Join(dir, "mutate.yaml")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.LoadFile(filepath.Join(dir, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := Inventory(docs, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv.VirtualServicesByHost) == 0 {
			t.Fatalf("%s: no VirtualServices in the audit's inventory", dir)
		}
		e, err := engine.New(ctx, engine.Options{Config: cfg, Inventory: inv})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := check.Run(ctx, e, docs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			for _, v := range r.Violations {
				if v.Code == "EGR110" {
					t.Errorf("%s: %s %s/%s: %s", filepath.Base(dir), r.Kind, r.Namespace, r.Name, v.Message)
				}
			}
		}
		// The same ServiceEntries alone: nothing routes them.
		var ses []check.Document
		for _, d := range docs {
			if d.GVK.Kind == "ServiceEntry" {
				ses = append(ses, d)
			}
		}
		inv, err = Inventory(ses, cfg)
		if err != nil {
			t.Fatal(err)
		}
		e, err = engine.New(ctx, engine.Options{Config: cfg, Inventory: inv})
		if err != nil {
			t.Fatal(err)
		}
		rep, err = check.Run(ctx, e, ses)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, r := range rep.Results {
			for _, v := range r.Violations {
				if v.Code == "EGR110" {
					found++
				}
			}
		}
		if found == 0 {
			t.Errorf("%s: the ServiceEntries without their VirtualServices: no EGR110", filepath.Base(dir))
		}
	}
}
