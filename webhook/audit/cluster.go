package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

// listPage is how many objects one list call asks for.
const listPage = 500

// ListObjects reads the objects of the policed kinds (config kinds, each at
// its version) of namespace ("" for all) from the API server, page by page,
// sorted by kind, namespace and name.
//
// Workloads are read in the mesh's namespaces alone (config.MeshNamespace,
// as the webhooks receive them), and only those no other workload controls
// (a Deployment, not its ReplicaSets and their Pods): a finding is reported
// once, on the object its owner writes.
func ListObjects(ctx context.Context, dyn dynamic.Interface, kinds []config.PolicedKind, namespace string) ([]check.Document, error) {
	var docs []check.Document
	var mesh map[string]bool
	if slices.ContainsFunc(kinds, func(k config.PolicedKind) bool { return config.IsWorkload(k.Group, k.Kind) }) {
		var err error
		if mesh, err = meshNamespaces(ctx, dyn); err != nil {
			return nil, err
		}
	}
	for _, k := range kinds {
		workload := config.IsWorkload(k.Group, k.Kind)
		gvr := schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Resource}
		err := list(ctx, dyn, gvr, k.Kind, namespace, func(item *unstructured.Unstructured) error {
			if workload && (!mesh[item.GetNamespace()] || controlledByWorkload(item.GetOwnerReferences())) {
				return nil
			}
			d, err := document(item)
			docs = append(docs, d)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(docs, func(i, j int) bool {
		a, b := docs[i], docs[j]
		if a.GVK.Kind != b.GVK.Kind {
			return a.GVK.Kind < b.GVK.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return docs, nil
}

// list calls each for every object of gvr (kind) in namespace ("" for
// all), page by page.
func list(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, kind, namespace string, each func(*unstructured.Unstructured) error) error {
	opts := metav1.ListOptions{Limit: listPage}
	for {
		l, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		for i := range l.Items {
			item := &l.Items[i]
			item.SetAPIVersion(gvr.GroupVersion().String())
			item.SetKind(kind)
			if err := each(item); err != nil {
				return err
			}
		}
		if l.GetContinue() == "" {
			return nil
		}
		opts.Continue = l.GetContinue()
	}
}

// document is item as a check.Document.
func document(item *unstructured.Unstructured) (check.Document, error) {
	raw, err := item.MarshalJSON()
	if err != nil {
		return check.Document{}, err
	}
	return check.NewDocument(fmt.Sprintf("cluster %s %s/%s", item.GetKind(), item.GetNamespace(), item.GetName()), raw)
}

// ListModel reads the objects of the cluster model's kinds
// (config.ModelKinds) from the API server: in every namespace, whatever
// namespace is audited (cross-object rules look across namespaces), those
// of the kinds kept for the gateway's namespace alone there. A Secret's
// values are dropped as it is read.
func ListModel(ctx context.Context, dyn dynamic.Interface, cfg *config.Config) ([]check.Document, error) {
	var docs []check.Document
	for _, k := range config.ModelKinds {
		namespace := ""
		if k.GatewayNamespace {
			namespace = cfg.Gateway.Namespace
		}
		gvr := schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Resource}
		err := list(ctx, dyn, gvr, k.Kind, namespace, func(item *unstructured.Unstructured) error {
			if k.Kind == "Secret" {
				engine.DropSecretValues(item.Object)
			}
			d, err := document(item)
			docs = append(docs, d)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("the cluster model: %w", err)
		}
	}
	return docs, nil
}

// ClusterInventory is what an audit of a cluster knows of other objects:
// Inventory of docs, the objects audited, with the cluster model read from
// the API server (ListModel).
func ClusterInventory(ctx context.Context, dyn dynamic.Interface, docs []check.Document, cfg *config.Config) (engine.Inventory, error) {
	inv, err := Inventory(docs, cfg)
	if err != nil {
		return inv, err
	}
	modelDocs, err := ListModel(ctx, dyn, cfg)
	if err != nil {
		return inv, err
	}
	if inv.Model, err = check.Model(modelDocs, cfg); err == nil {
		// Every kind was listed: one without objects is empty.
		inv.Model.Partial = false
	}
	return inv, err
}

// Inventory is what an audit of docs knows of other objects: the
// ServiceEntries, as serve's inventory, and the VirtualServices by host (the
// audit reads every object: a ServiceEntry that no route takes through the
// gateway is found, EGR110).
func Inventory(docs []check.Document, cfg *config.Config) (engine.Inventory, error) {
	inv, err := check.Inventory(docs, cfg)
	if err != nil {
		return inv, err
	}
	inv.VirtualServicesByHost, err = check.VirtualServicesByHost(docs)
	return inv, err
}

// meshNamespaces lists the namespaces and keeps those in the mesh.
func meshNamespaces(ctx context.Context, dyn dynamic.Interface) (map[string]bool, error) {
	mesh := map[string]bool{}
	opts := metav1.ListOptions{Limit: listPage}
	for {
		list, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing namespaces (for the workloads of the mesh's namespaces): %w", err)
		}
		for _, ns := range list.Items {
			if config.MeshNamespace(ns.GetLabels()) {
				mesh[ns.GetName()] = true
			}
		}
		if list.GetContinue() == "" {
			return mesh, nil
		}
		opts.Continue = list.GetContinue()
	}
}

// controlledByWorkload says whether a controller of another workload kind
// owns the object.
func controlledByWorkload(refs []metav1.OwnerReference) bool {
	for _, r := range refs {
		group, _, found := strings.Cut(r.APIVersion, "/")
		if !found {
			group = "" // core: apiVersion v1
		}
		if r.Controller != nil && *r.Controller && config.IsWorkload(group, r.Kind) {
			return true
		}
	}
	return false
}

// ReportAPI selects the report resource written to the cluster.
type ReportAPI string

// The report APIs.
const (
	// OpenReports is openreports.io/v1alpha1 Report.
	OpenReports ReportAPI = "openreports"
	// PolicyReport is wgpolicyk8s.io/v1alpha2 PolicyReport, for older viewers.
	PolicyReport ReportAPI = "wgpolicyk8s"
)

// ReportAPIs lists the valid report APIs.
var ReportAPIs = []ReportAPI{OpenReports, PolicyReport}

// GVR is the resource of the report API.
func (a ReportAPI) GVR() schema.GroupVersionResource {
	if a == PolicyReport {
		return schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
	}
	return reportsv1alpha1.SchemeGroupVersion.WithResource("reports")
}

// toUnstructured converts a Report into the object of api. A PolicyReport
// has the same results and summary; it has no source or configuration.
func toUnstructured(r *reportsv1alpha1.Report, api ReportAPI) (*unstructured.Unstructured, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	if api == PolicyReport {
		u.SetAPIVersion("wgpolicyk8s.io/v1alpha2")
		u.SetKind("PolicyReport")
		unstructured.RemoveNestedField(u.Object, "source")
		unstructured.RemoveNestedField(u.Object, "configuration")
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// Prune says which earlier reports WriteReports deletes.
type Prune struct {
	// Enabled deletes the reports egress-guard wrote earlier in namespaces
	// of Scope that no longer have audited objects: right when the audit
	// read the whole scope from the cluster, wrong for a few files.
	Enabled bool
	// Scope is a namespace, or "" for all.
	Scope string
}

// WriteReports creates or updates one report per namespace, so that a new
// audit replaces the last one, and prunes the stale ones as prune says.
func WriteReports(ctx context.Context, dyn dynamic.Interface, api ReportAPI, reps []reportsv1alpha1.Report, prune Prune) error {
	res := dyn.Resource(api.GVR())
	keep := map[string]bool{}
	for i := range reps {
		want, err := toUnstructured(&reps[i], api)
		if err != nil {
			return err
		}
		keep[want.GetNamespace()] = true
		client := res.Namespace(want.GetNamespace())
		got, err := client.Get(ctx, want.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := client.Create(ctx, want, metav1.CreateOptions{FieldManager: Source}); err != nil {
				return fmt.Errorf("creating report %s/%s: %w", want.GetNamespace(), want.GetName(), err)
			}
			continue
		case err != nil:
			return fmt.Errorf("reading report %s/%s: %w", want.GetNamespace(), want.GetName(), err)
		}
		want.SetResourceVersion(got.GetResourceVersion())
		want.SetUID(got.GetUID())
		if _, err := client.Update(ctx, want, metav1.UpdateOptions{FieldManager: Source}); err != nil {
			return fmt.Errorf("updating report %s/%s: %w", want.GetNamespace(), want.GetName(), err)
		}
	}
	if !prune.Enabled {
		return nil
	}
	old, err := res.Namespace(prune.Scope).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + Source})
	if err != nil {
		return fmt.Errorf("listing earlier reports: %w", err)
	}
	for _, o := range old.Items {
		if keep[o.GetNamespace()] || o.GetName() != ReportName {
			continue
		}
		if err := res.Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the stale report %s/%s: %w", o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}
