package engine

import (
	encjson "encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// wantInventory is data.inventory of inv as the rules read it, derived the
// plain way: the ServiceEntries' JSON in the given order, and the hosts of
// the MESH_EXTERNAL ones (no location means MESH_EXTERNAL), exact names in
// externalHosts, the suffixes of "*." wildcards sorted in externalSuffixes
// and as the keys of externalSuffixIndex.
func wantInventory(t testing.TB, inv Inventory) ast.Value {
	t.Helper()
	ses := inv.ServiceEntries
	if ses == nil {
		ses = []ServiceEntryRef{}
	}
	raw, err := encjson.Marshal(ses)
	if err != nil {
		t.Fatal(err)
	}
	hosts, suffixes := map[string]any{}, map[string]any{}
	for _, se := range ses {
		if se.Location != "" && se.Location != "MESH_EXTERNAL" {
			continue
		}
		for _, h := range se.Hosts {
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				suffixes["."+rest] = true
			} else {
				hosts[h] = true
			}
		}
	}
	list := make([]any, 0, len(suffixes))
	for _, s := range slices.Sorted(func(yield func(string) bool) {
		for s := range suffixes {
			if !yield(s) {
				return
			}
		}
	}) {
		list = append(list, s)
	}
	doc := map[string]any{"externalHosts": hosts, "externalSuffixIndex": suffixes, "externalSuffixes": list}
	v, err := ast.InterfaceToValue(doc)
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(ast.Object)
	obj.Insert(ast.StringTerm("serviceEntries"), ast.MustParseTerm(string(raw)))
	return obj
}

// changes applies n random changes to ses (sorted by namespace and name,
// kept sorted): hosts moved, added or shared with another ServiceEntry,
// locations changed, ServiceEntries created and deleted. It returns a new
// slice and leaves ses alone.
func changes(r *rand.Rand, ses []ServiceEntryRef, n int) []ServiceEntryRef {
	out := slices.Clone(ses)
	host := func() string {
		h := fmt.Sprintf("h%d.example.com", r.IntN(40))
		if r.IntN(2) == 0 {
			h = "*." + h
		}
		return h
	}
	for range n {
		switch op := r.IntN(10); {
		case op < 4 && len(out) > 0: // new hosts
			i := r.IntN(len(out))
			hs := make([]string, r.IntN(3))
			for k := range hs {
				hs[k] = host()
			}
			if r.IntN(8) == 0 {
				hs = nil
			}
			out[i].Hosts = hs
		case op < 5 && len(out) > 0: // location
			i := r.IntN(len(out))
			out[i].Location = []string{"", "MESH_EXTERNAL", "MESH_INTERNAL"}[r.IntN(3)]
		case op < 6 && len(out) > 1: // a host shared with another
			i, j := r.IntN(len(out)), r.IntN(len(out))
			if len(out[j].Hosts) > 0 {
				out[i].Hosts = append(slices.Clip(out[i].Hosts), out[j].Hosts[0])
			}
		case op < 8: // create (or replace)
			se := ServiceEntryRef{Namespace: fmt.Sprintf("ns%d", r.IntN(4)), Name: fmt.Sprintf("se%d", r.IntN(60)), Hosts: []string{host()}}
			i, found := slices.BinarySearchFunc(out, se, func(a, b ServiceEntryRef) int {
				return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
			})
			if found {
				out[i] = se
			} else {
				out = slices.Insert(out, i, se)
			}
		default: // delete
			if len(out) > 0 {
				i := r.IntN(len(out))
				out = slices.Delete(out, i, i+1)
			}
		}
	}
	return out
}

// A swap built from the last document equals a build from nothing, over
// random sequences of changes, and leaves the documents before it as they
// were.
func TestInventorySwapEqualsRebuild(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		var ses []ServiceEntryRef
		d := buildInventory(Inventory{})
		type seen struct {
			d    *inventoryDoc
			want ast.Value
		}
		var history []seen
		for step := range 30 {
			ses = changes(r, ses, 1+r.IntN(6))
			inv := Inventory{ServiceEntries: ses}
			next := d.withInventory(inv)
			want := wantInventory(t, inv)
			if got := vm.ToAST(next.value); ast.Compare(got, want) != 0 {
				t.Fatalf("seed %d step %d: swap\n%v\nwant\n%v", seed, step, got, want)
			}
			if got := vm.ToAST(buildInventory(inv).value); ast.Compare(got, want) != 0 {
				t.Fatalf("seed %d step %d: rebuild\n%v\nwant\n%v", seed, step, got, want)
			}
			history = append(history, seen{next, want})
			// Now and then a swap from an older document: it starts
			// afresh, and the line goes on from it.
			if r.IntN(10) == 0 && len(history) > 1 {
				old := history[r.IntN(len(history)-1)]
				next = old.d.withInventory(inv)
				if got := vm.ToAST(next.value); ast.Compare(got, want) != 0 {
					t.Fatalf("seed %d step %d: swap from an older document\n%v\nwant\n%v", seed, step, got, want)
				}
			}
			d = next
		}
		for i, h := range history {
			// ToAST keeps the ast form it made: rebuild it from the values.
			if got := vm.ToAST(vm.FromAST(vm.ToAST(h.d.value))); ast.Compare(got, h.want) != 0 {
				t.Fatalf("seed %d: document %d changed by later swaps", seed, i)
			}
		}
	}
}

// An unsorted inventory (or one with a ServiceEntry twice) is built in the
// order given, and the swap after it starts afresh.
func TestInventoryUnsorted(t *testing.T) {
	a := ServiceEntryRef{Namespace: "a", Name: "x", Hosts: []string{"x.com"}}
	b := ServiceEntryRef{Namespace: "b", Name: "y", Hosts: []string{"*.y.com"}}
	for _, ses := range [][]ServiceEntryRef{{b, a}, {a, a}, {a, b}, {b, a, b}, {a}} {
		inv := Inventory{ServiceEntries: ses}
		d := buildInventory(Inventory{ServiceEntries: []ServiceEntryRef{a, b}}).withInventory(inv)
		if got, want := vm.ToAST(d.value), wantInventory(t, inv); ast.Compare(got, want) != 0 {
			t.Errorf("%v: %v, want %v", ses, got, want)
		}
		next := d.withInventory(Inventory{ServiceEntries: []ServiceEntryRef{b}})
		if got, want := vm.ToAST(next.value), wantInventory(t, Inventory{ServiceEntries: []ServiceEntryRef{b}}); ast.Compare(got, want) != 0 {
			t.Errorf("after %v: %v, want %v", ses, got, want)
		}
	}
}
