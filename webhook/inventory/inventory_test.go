package inventory

import (
	"context"
	"reflect"
	"testing"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

func serviceEntry(ns, name string, location apinetworkingv1.ServiceEntry_Location, hosts ...string) *networkingv1.ServiceEntry {
	se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, UID: types.UID("u-" + name), ResourceVersion: "7",
		Labels: map[string]string{"team": "db"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	se.Spec.Hosts = hosts
	se.Spec.Location = location
	se.Spec.Resolution = apinetworkingv1.ServiceEntry_DNS
	se.Spec.Ports = []*apinetworkingv1.ServicePort{{Number: 3306, Name: "mysql", Protocol: "TCP"}}
	return se
}

func TestFromList(t *testing.T) {
	got := FromList([]*networkingv1.ServiceEntry{
		serviceEntry("b", "x", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "x.example"),
		serviceEntry("a", "z", apinetworkingv1.ServiceEntry_MESH_INTERNAL, "z.internal", "*.z.internal"),
		serviceEntry("a", "y", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "legacy-db"),
	})
	want := engine.Inventory{ServiceEntries: []engine.ServiceEntryRef{
		{Namespace: "a", Name: "y", Hosts: []string{"legacy-db"}, Location: "MESH_EXTERNAL"},
		{Namespace: "a", Name: "z", Hosts: []string{"z.internal", "*.z.internal"}, Location: "MESH_INTERNAL"},
		{Namespace: "b", Name: "x", Hosts: []string{"x.example"}, Location: "MESH_EXTERNAL"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if empty := FromList(nil); empty.ServiceEntries == nil || len(empty.ServiceEntries) != 0 {
		t.Errorf("no ServiceEntries is an empty list: %#v", empty)
	}
}

// A burst of changes is one signal, once the burst ends.
func TestCoalesce(t *testing.T) {
	in, out := make(chan struct{}, 1), make(chan struct{}, 1)
	go coalesce(t.Context(), in, out, 200*time.Millisecond, time.Hour)
	for range 1000 {
		signal(in)
	}
	<-out
	select {
	case <-out:
		t.Fatal("one burst signalled twice")
	case <-time.After(600 * time.Millisecond):
	}
	// The next change is signalled again.
	signal(in)
	<-out
}

// A burst that goes on is signalled every max, not only at its end.
func TestCoalesceLongBurst(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	in, out := make(chan struct{}, 1), make(chan struct{}, 1)
	go coalesce(ctx, in, out, time.Hour, 20*time.Millisecond)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				signal(in)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	<-out
	<-out
	close(stop)
	cancel()
}

// noWatchList is a ListWatch whose watch cannot stream the initial list.
type noWatchList struct{ *toolscache.ListWatch }

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// The Watcher follows a list and a watch: it is synced by the list, signals
// the watch's changes, and a Snapshot holds them.
func TestWatcherFollowsTheWatch(t *testing.T) {
	watcher := watch.NewFake()
	listed := make(chan struct{})
	w := newWatcher(noWatchList{&toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			defer close(listed)
			return &networkingv1.ServiceEntryList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []*networkingv1.ServiceEntry{
				serviceEntry("b", "x", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "x.example"),
				serviceEntry("a", "y", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "legacy-db"),
			}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return watcher, nil },
	}})
	if _, err := w.Snapshot(t.Context()); err == nil {
		t.Error("a snapshot before the first list")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error)
	go func() { done <- w.Start(ctx) }()
	<-listed
	<-w.Changes()
	snapshot := func() []engine.ServiceEntryRef {
		t.Helper()
		inv, err := w.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return inv.ServiceEntries
	}
	if got := snapshot(); len(got) != 2 || got[0].Name != "y" || got[1].Name != "x" {
		t.Fatalf("after the list: %+v", got)
	}
	watcher.Add(serviceEntry("a", "z", apinetworkingv1.ServiceEntry_MESH_INTERNAL, "z.internal"))
	watcher.Modify(serviceEntry("b", "x", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "x2.example"))
	del := serviceEntry("a", "y", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "legacy-db")
	del.ResourceVersion = "9"
	watcher.Delete(del)
	want := []engine.ServiceEntryRef{
		{Namespace: "a", Name: "z", Hosts: []string{"z.internal"}, Location: "MESH_INTERNAL"},
		{Namespace: "b", Name: "x", Hosts: []string{"x2.example"}, Location: "MESH_EXTERNAL"},
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-w.Changes():
		case <-deadline:
			t.Fatalf("after the watch: %+v, want %+v", snapshot(), want)
		}
		if got := snapshot(); reflect.DeepEqual(got, want) {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A list after the watch broke off replaces what was there: what it lacks
// was deleted.
func TestEntriesReplace(t *testing.T) {
	s := newEntries()
	s.put(serviceEntry("a", "x", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "x.com"))
	s.put(serviceEntry("a", "y", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "y.com"))
	s.snapshot()
	s.put(serviceEntry("a", "w", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "w.com"))
	s.replace([]any{serviceEntry("a", "y", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "y2.com")})
	want := []engine.ServiceEntryRef{{Namespace: "a", Name: "y", Hosts: []string{"y2.com"}, Location: "MESH_EXTERNAL"}}
	if got := s.snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
