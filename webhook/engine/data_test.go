package engine

import (
	"context"
	encjson "encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/egress-guard/egress-guard/policies"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// The indexes the engine builds are those lib/hosts.rego derives from the
// allow list and the inventory when the data lacks them: the rules read the
// same document either way.
func TestIndexesMatchTheRego(t *testing.T) {
	cfg, err := config.Parse([]byte(`apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {gateway: istio-system/egress-gateway}
allow:
- hosts: [test.com, "*.wikipedia.org"]
  ports: [80, 443]
- hosts: ["*.wikipedia.org"]
  namespaces: [team-a]
- hosts: [test.com, "*.en.wikipedia.org", en.wikipedia.org]
`))
	if err != nil {
		t.Fatal(err)
	}
	inv := Inventory{ServiceEntries: []ServiceEntryRef{
		{Namespace: "a", Name: "lan", Hosts: []string{"*.lan.office.local", "nas.office.local", "*.b.example"}},
		{Namespace: "b", Name: "lan", Hosts: []string{"*.lan.office.local", "*.a.example"}, Location: "MESH_EXTERNAL"},
		{Namespace: "b", Name: "internal", Hosts: []string{"*.internal.example"}, Location: "MESH_INTERNAL"},
	}}
	e, err := New(context.Background(), Options{Config: cfg, Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	lib, err := fs.ReadFile(policies.FS, "egressguard/lib/hosts.rego")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rego.New(
		rego.Query(`cfg := object.remove(data.config, {"allowIndex"})
inv := object.remove(data.inventory, {"externalSuffixIndex"})
allow := data.egressguard.lib._allow_index with data.config as cfg
suffixes := data.egressguard.lib._external_suffixes with data.inventory as inv`),
		rego.Module("hosts.rego", string(lib)), rego.Store(e.data.store()),
	).Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v %v", rs, err)
	}
	doc := storeDoc(t, e, "data")
	got := doc["config"].(map[string]any)["allowIndex"]
	if want := rs[0].Bindings["allow"]; !reflect.DeepEqual(got, want) {
		t.Errorf("allowIndex:\ngot  %v\nwant %v", got, want)
	}
	wantHosts := map[string]any{
		"test.com":         []any{pos(0, 0), pos(2, 0)},
		"en.wikipedia.org": []any{pos(2, 2)},
	}
	if !reflect.DeepEqual(got.(map[string]any)["hosts"], wantHosts) {
		t.Errorf("allowIndex.hosts: %v", got.(map[string]any)["hosts"])
	}
	got = doc["inventory"].(map[string]any)["externalSuffixIndex"]
	if want := rs[0].Bindings["suffixes"]; !reflect.DeepEqual(got, want) {
		t.Errorf("externalSuffixIndex:\ngot  %v\nwant %v", got, want)
	}
	if want := map[string]any{".a.example": true, ".b.example": true, ".lan.office.local": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("externalSuffixIndex: %v", got)
	}
}

func pos(i, j int) []any { return []any{jsonNumber(i), jsonNumber(j)} }

func jsonNumber(i int) any { return encjson.Number(fmt.Sprint(i)) }

// A host is looked up in the indexes by name and by the wildcards over it:
// what covers it, and in which order, is what a scan of the list gives.
func TestIndexedLookups(t *testing.T) {
	cfg, err := config.Parse([]byte(`apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {gateway: istio-system/egress-gateway}
allow:
- hosts: [api.x.example.org]
  ports: [8443]
- hosts: ["*.x.example.org"]
  ports: [443]
  namespaces: [team-a]
- hosts: ["*.example.org"]
  ports: [80]
- hosts: [api.x.example.org]
  origination: {mode: SIMPLE, port: 443}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range Evaluators {
		e, err := New(context.Background(), Options{Config: cfg, Evaluator: ev})
		if err != nil {
			t.Fatal(err)
		}
		lib, err := fs.ReadFile(policies.FS, "egressguard/lib/hosts.rego")
		if err != nil {
			t.Fatal(err)
		}
		for host, want := range map[string][]int{
			"api.x.example.org":   {0, 1, 2, 3},
			"y.x.example.org":     {1, 2},
			"x.example.org":       {2},
			"*.x.example.org":     {1, 2},
			"example.org":         nil,
			"api.x.example.org.y": nil,
		} {
			for ns, skip := range map[string]int{"team-a": -1, "team-b": 1} {
				rs, err := rego.New(
					rego.Query(fmt.Sprintf(`x := [i | some entry in data.egressguard.lib.entries(%q, %q); some i, e in data.config.allow; e == entry]`, host, ns)),
					rego.Module("hosts.rego", string(lib)), rego.Store(e.data.store()),
				).Eval(context.Background())
				if err != nil || len(rs) != 1 {
					t.Fatalf("%s: %v %v", host, rs, err)
				}
				var got []int
				for _, v := range rs[0].Bindings["x"].([]any) {
					var i int
					fmt.Sscan(fmt.Sprint(v), &i)
					got = append(got, i)
				}
				var w []int
				for _, i := range want {
					if i != skip {
						w = append(w, i)
					}
				}
				sort.Ints(w)
				if !reflect.DeepEqual(got, w) {
					t.Errorf("%s: entries(%q, %q) = %v, want %v", ev, host, ns, got, w)
				}
			}
		}
	}
}

// A new inventory swaps the data, not the compiled policies: the engine it
// derives decides with the new inventory, the old one as before.
func TestWithInventory(t *testing.T) {
	ctx := context.Background()
	for _, ev := range Evaluators {
		before, err := New(ctx, Options{Config: testConfig(t), Evaluator: ev})
		if err != nil {
			t.Fatal(err)
		}
		after, err := before.WithInventory(Inventory{ServiceEntries: []ServiceEntryRef{
			{Namespace: "a", Name: "lan", Hosts: []string{"*.lan.office.local"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		empty, err := after.WithInventory(Inventory{})
		if err != nil {
			t.Fatal(err)
		}
		if !after.SamePolicies(before) {
			t.Fatalf("%s: a new inventory compiled the policies again", ev)
		}
		if after.ServiceEntries() != 1 || before.ServiceEntries() != 0 {
			t.Errorf("%s: ServiceEntries %d and %d", ev, before.ServiceEntries(), after.ServiceEntries())
		}
		in, err := Input(request("DestinationRule", `{"metadata":{"name":"d"},"spec":{"host":"pc.lan.office.local","trafficPolicy":{"tls":{"mode":"DISABLE"}}}}`))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			e    *Engine
			want bool
		}{{before, false}, {after, true}, {empty, false}} {
			vs, err := c.e.Violations(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(vs) > 0; got != c.want {
				t.Errorf("%s: pc.lan.office.local external: %v, want %v (%+v)", ev, got, c.want, vs)
			}
		}
	}
}

// Evaluations run while inventories are swapped in; run with -race.
func TestSwapWhileEvaluating(t *testing.T) {
	ctx := context.Background()
	for _, ev := range Evaluators {
		e, err := New(ctx, Options{Config: testConfig(t), Evaluator: ev})
		if err != nil {
			t.Fatal(err)
		}
		var current = make(chan *Engine, 1)
		current <- e
		done := make(chan error)
		for range 4 {
			go func() {
				for range 50 {
					cur := <-current
					current <- cur
					in, err := cur.Input(request("VirtualService", directVS))
					if err == nil {
						_, err = cur.Violations(ctx, in)
					}
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		for i := range 50 {
			cur := <-current
			next, err := cur.WithInventory(sizeInventory(i))
			if err != nil {
				t.Fatal(err)
			}
			current <- next
		}
		for range 4 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
}

// BenchmarkInventoryUpdate: a change of one ServiceEntry with 10,000 in the
// inventory, as serve applies it: a new data document and its indexes, no
// compile. It reports the p99 of the swaps and the compiles they made.
func BenchmarkInventoryUpdate(b *testing.B) {
	// As serve's inventory changes: one ServiceEntry gets new hosts, the
	// others keep theirs.
	inv := sizeInventory(10000)
	e, err := New(context.Background(), Options{Config: sizeConfig(b, 10), Inventory: inv})
	if err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	compiles := 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		inv.ServiceEntries[i%len(inv.ServiceEntries)].Hosts = []string{fmt.Sprintf("changed%d.example.com", i)}
		start := time.Now()
		next, err := e.WithInventory(inv)
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if !next.SamePolicies(e) {
			compiles++
		}
		e = next
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(compiles), "compiles")
}

// The inventory's ServiceEntries are their JSON form as values, built once
// and reused by the next swap while unchanged.
func TestInventoryEntriesAreTheirJSON(t *testing.T) {
	inv := Inventory{ServiceEntries: []ServiceEntryRef{
		{Namespace: "a", Name: "x", Hosts: []string{"x.com", "*.y.com"}},
		{Namespace: "b", Name: "y", Hosts: nil, Location: "MESH_INTERNAL"},
		{Namespace: "a", Name: "x", Hosts: []string{"x.com", "*.y.com"}},
		{Namespace: "c", Name: "z", Hosts: []string{}},
	}}
	check := func(inv Inventory, d *inventoryDoc) {
		t.Helper()
		if got, want := vm.ToAST(d.value), wantInventory(t, inv); ast.Compare(got, want) != 0 {
			t.Fatalf("inventory\n%v, want\n%v", got, want)
		}
	}
	first := buildInventory(inv)
	check(inv, first)
	// Sorted, the next swap reuses the unchanged entries' values.
	inv.ServiceEntries = slices.Delete(inv.ServiceEntries, 2, 3)
	sorted := first.withInventory(inv)
	check(inv, sorted)
	inv.ServiceEntries = slices.Clone(inv.ServiceEntries)
	inv.ServiceEntries[2].Hosts = []string{"z.com"}
	second := sorted.withInventory(inv)
	check(inv, second)
	if second.entries[0] != sorted.entries[0] || second.entries[1] != sorted.entries[1] {
		t.Error("an unchanged ServiceEntry was built again")
	}
	if second.entries[2] == sorted.entries[2] {
		t.Error("a changed ServiceEntry kept its old value")
	}
}
