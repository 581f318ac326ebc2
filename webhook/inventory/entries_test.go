package inventory

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// A snapshot is what listing the cache and converting it gives (FromList),
// over random sequences of events, and the snapshots given before it stay
// as they were.
func TestEntriesFollowTheEvents(t *testing.T) {
	for seed := range uint64(100) {
		r := rand.New(rand.NewPCG(seed, 3))
		s := newEntries()
		cache := map[string]*networkingv1.ServiceEntry{}
		type seen struct {
			got, want []engine.ServiceEntryRef
		}
		var history []seen
		for step := range 40 {
			for range r.IntN(12) {
				ns, name := fmt.Sprintf("ns%d", r.IntN(3)), fmt.Sprintf("se%d", r.IntN(30))
				key := ns + "/" + name
				switch op := r.IntN(10); {
				case op < 6:
					location := apinetworkingv1.ServiceEntry_Location(r.IntN(2))
					se := serviceEntry(ns, name, location, fmt.Sprintf("h%d.example.com", r.IntN(50)))
					if r.IntN(4) == 0 {
						se.Spec.Hosts = append(se.Spec.Hosts, fmt.Sprintf("*.w%d.example.com", r.IntN(50)))
					}
					cache[key] = se
					s.put(se)
				case op < 8:
					if se, ok := cache[key]; ok {
						delete(cache, key)
						s.remove(se)
					}
				default:
					// A deletion the watch missed, seen on a relist.
					if _, ok := cache[key]; ok {
						delete(cache, key)
						s.remove(toolscache.DeletedFinalStateUnknown{Key: key})
					}
				}
			}
			got := s.snapshot()
			want := FromList(slices.Collect(func(yield func(*networkingv1.ServiceEntry) bool) {
				for _, se := range cache {
					if !yield(se) {
						return
					}
				}
			})).ServiceEntries
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d:\ngot  %v\nwant %v", seed, step, got, want)
			}
			history = append(history, seen{got: got, want: slices.Clone(want)})
		}
		for i, h := range history {
			if !reflect.DeepEqual(h.got, h.want) {
				t.Fatalf("seed %d: snapshot %d changed since", seed, i)
			}
		}
	}
}

// Without changes, a snapshot is the last one; objects that are not
// ServiceEntries are ignored.
func TestEntriesUnchanged(t *testing.T) {
	s := newEntries()
	if got := s.snapshot(); got == nil || len(got) != 0 {
		t.Fatalf("no ServiceEntries is an empty list: %#v", got)
	}
	s.put(serviceEntry("a", "x", apinetworkingv1.ServiceEntry_MESH_EXTERNAL, "x.com"))
	s.put("not a ServiceEntry")
	s.remove(42)
	first := s.snapshot()
	if second := s.snapshot(); len(first) != 1 || &second[0] != &first[0] {
		t.Errorf("%v then %v", first, second)
	}
}
