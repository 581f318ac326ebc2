package inventory

import (
	"context"
	"reflect"
	"testing"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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

// The cache keeps what the rules read and nothing more.
func TestTrim(t *testing.T) {
	got, err := Trim(serviceEntry("db", "legacy", apinetworkingv1.ServiceEntry_MESH_INTERNAL, "legacy-db"))
	if err != nil {
		t.Fatal(err)
	}
	se := got.(*networkingv1.ServiceEntry)
	if se.Name != "legacy" || se.Namespace != "db" || se.UID != "u-legacy" || se.ResourceVersion != "7" {
		t.Errorf("identity lost: %+v", se.ObjectMeta)
	}
	if se.Labels != nil || se.ManagedFields != nil {
		t.Errorf("metadata kept: %+v", se.ObjectMeta)
	}
	if !reflect.DeepEqual(se.Spec.Hosts, []string{"legacy-db"}) || se.Spec.Location != apinetworkingv1.ServiceEntry_MESH_INTERNAL {
		t.Errorf("hosts or location lost: %v", &se.Spec)
	}
	if se.Spec.Resolution != apinetworkingv1.ServiceEntry_NONE || se.Spec.Ports != nil {
		t.Errorf("spec kept: %v", &se.Spec)
	}
	tombstone := "not a ServiceEntry"
	if got, err := Trim(tombstone); err != nil || got != tombstone {
		t.Errorf("other objects pass through: %v %v", got, err)
	}
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
