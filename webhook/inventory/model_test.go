package inventory

import (
	"context"
	"strings"
	"testing"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

func secret(name, value string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
		"metadata": map[string]any{"name": name, "namespace": "istio-system", "resourceVersion": "3"},
		"data":     map[string]any{"tls.crt": value, "tls.key": value},
	}}
}

// fakeList is a ListerWatcher of items, then of what w sends.
func fakeList(w *watch.FakeWatcher, list runtime.Object) toolscache.ListerWatcher {
	return noWatchList{&toolscache.ListWatch{
		ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return list, nil },
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return w, nil },
	}}
}

// The Watcher's model: not ready until every kind is listed, the
// ServiceEntries of its own reflector beside the other kinds', a Secret
// without its values, an unchanged kind the same ModelKind from snapshot to
// snapshot, and every change in the next one.
func TestWatcherFollowsTheModel(t *testing.T) {
	seWatch, secretWatch := watch.NewFake(), watch.NewFake()
	w := newWatcher(fakeList(seWatch, &networkingv1.ServiceEntryList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []*networkingv1.ServiceEntry{
		serviceEntry("shop", "api", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "api.example.com"),
	}}))
	secretsListed := make(chan struct{})
	secrets := newCollection("Secret", noWatchList{&toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			<-secretsListed
			return &unstructured.UnstructuredList{Object: map[string]any{"metadata": map[string]any{"resourceVersion": "1"}},
				Items: []unstructured.Unstructured{*secret("test.client", "c2VjcmV0")}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return secretWatch, nil },
	}})
	w.withModel(secrets)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = w.Start(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for !w.synced.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the ServiceEntries were not listed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := w.Snapshot(ctx); err == nil || !strings.Contains(err.Error(), "Secret not synced yet") {
		t.Fatalf("before the Secrets' list: %v", err)
	}
	close(secretsListed)
	<-w.Changes()
	snapshot := func() engine.Inventory {
		t.Helper()
		inv, err := w.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	kind := func(inv engine.Inventory, name string) *engine.ModelKind {
		for _, k := range inv.Model.Kinds {
			if k.Kind == name {
				return k
			}
		}
		t.Fatalf("no %s in the model", name)
		return nil
	}
	first := snapshot()
	ses, secs := kind(first, "ServiceEntry"), kind(first, "Secret")
	if len(ses.Objects) != 1 || ses.Objects[0].Name != "api" || ses.Objects[0].Hosts[0] != "api.example.com" {
		t.Fatalf("ServiceEntries: %+v", ses.Objects)
	}
	if got := vm.ToAST(ses.Objects[0].Value).String(); !strings.Contains(got, `"resolution": "DNS"`) || strings.Contains(got, "managedFields") {
		t.Errorf("a ServiceEntry in the model: %s", got)
	}
	if len(secs.Objects) != 1 {
		t.Fatalf("Secrets: %+v", secs.Objects)
	}
	if got := vm.ToAST(secs.Objects[0].Value).String(); strings.Contains(got, "c2VjcmV0") || !strings.Contains(got, `"keys": ["tls.crt", "tls.key"]`) {
		t.Errorf("a Secret in the model: %s", got)
	}

	secretWatch.Add(secret("client-credential", "dmFsdWU="))
	deadline = time.Now().Add(10 * time.Second)
	for {
		select {
		case <-w.Changes():
		case <-time.After(time.Until(deadline)):
			t.Fatal("the Secret added is not in the model")
		}
		if next := snapshot(); len(kind(next, "Secret").Objects) == 2 {
			if kind(next, "ServiceEntry") != ses {
				t.Error("the ServiceEntries, unchanged, are another ModelKind")
			}
			// What changed is said, for the engine to edit.
			if k := kind(next, "Secret"); k.Base != secs || len(k.Changed) != 1 || k.Changed["istio-system/client-credential"] == nil {
				t.Errorf("the Secrets' change: base %p (want %p), changed %v", k.Base, secs, k.Changed)
			}
			break
		}
	}
	seWatch.Delete(serviceEntry("shop", "api", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "api.example.com"))
	secretWatch.Delete(secret("test.client", ""))
	deadline = time.Now().Add(10 * time.Second)
	for {
		select {
		case <-w.Changes():
		case <-time.After(time.Until(deadline)):
			t.Fatal("the deletions are not in the model")
		}
		next := snapshot()
		if s := kind(next, "Secret").Objects; len(kind(next, "ServiceEntry").Objects) == 0 && len(s) == 1 && s[0].Name == "client-credential" {
			break
		}
	}
	if n := w.ModelErrors(); n != 0 {
		t.Errorf("%d objects left out", n)
	}
}
