package vm

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// EditStringKeys and EditStrings give what building the result afresh
// gives, look up every key (indexed or not), and leave their input alone.
func TestEditSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	key := func() string { return fmt.Sprintf("k%03d", r.IntN(300)) }
	var keys []string
	obj, arr := EditStringKeys(nil, nil, true, nil), EditStrings(nil, nil, nil)
	for step := range 300 {
		var add, del []string
		for range r.IntN(20) {
			if k := key(); !slices.Contains(keys, k) && !slices.Contains(add, k) {
				add = append(add, k)
			}
		}
		for _, k := range keys {
			if r.IntN(8) == 0 {
				del = append(del, k)
			}
		}
		slices.Sort(add)
		before, beforeArr := ToAST(obj), ToAST(arr)
		next, nextArr := EditStringKeys(obj, add, true, del), EditStrings(arr, add, del)
		keys = slices.DeleteFunc(append(keys, add...), func(k string) bool { return slices.Contains(del, k) })
		slices.Sort(keys)
		kvs := make([]Value, 0, 2*len(keys))
		elems := make([]Value, 0, len(keys))
		for _, k := range keys {
			kvs = append(kvs, k, true)
			elems = append(elems, k)
		}
		if !equal(next, NewObject(kvs...)) || compare(next, NewObject(kvs...)) != 0 {
			t.Fatalf("step %d: object %v, want keys %v", step, ToAST(next), keys)
		}
		if !equal(nextArr, NewArray(elems...)) {
			t.Fatalf("step %d: array %v, want %v", step, ToAST(nextArr), keys)
		}
		for _, k := range keys {
			if next.GetString(k) != true {
				t.Fatalf("step %d: %s not found", step, k)
			}
		}
		for _, k := range del {
			if next.Get(k) != nil {
				t.Fatalf("step %d: deleted %s found", step, k)
			}
		}
		if !equal(FromAST(before), obj) || !equal(FromAST(beforeArr), arr) {
			t.Fatalf("step %d: input changed", step)
		}
		obj, arr = next, nextArr
	}
}

// An insert into an edited object (looked up by binary search) indexes it
// as any other: every key is found after.
func TestEditedObjectInsert(t *testing.T) {
	var add []string
	for i := range 40 {
		add = append(add, fmt.Sprintf("k%02d", i))
	}
	o := EditStringKeys(nil, add, true, nil)
	if !o.bsearch {
		t.Fatal("a large edited object is not looked up by binary search")
	}
	o.Insert("a", 1)
	o.Insert(ast.Number("1"), 2)
	for _, k := range add {
		if o.GetString(k) != true {
			t.Errorf("%s not found", k)
		}
	}
	if o.GetString("a") != 1 || o.Get(ast.Number("1")) != 2 || o.Get("zz") != nil {
		t.Errorf("inserted keys: %v", ToAST(o))
	}
}

// StringObject is NewObject of the same pairs, small or large.
func TestStringObject(t *testing.T) {
	for _, n := range []int{0, 3, indexFrom, 200} {
		keys := make([]string, n)
		values := make([]Value, n)
		kvs := make([]Value, 0, 2*n)
		for i := range n {
			keys[i], values[i] = fmt.Sprintf("ns/k%04d", i), NewObject("i", fmt.Sprint(i))
			kvs = append(kvs, keys[i], values[i])
		}
		got := StringObject(keys, values)
		if want := NewObject(kvs...); !equal(got, want) || compare(got, want) != 0 {
			t.Fatalf("%d keys: %v, want %v", n, ToAST(got), ToAST(want))
		}
		for i, k := range keys {
			if !equal(got.GetString(k), values[i]) || !equal(got.Get(k), values[i]) {
				t.Fatalf("%d keys: %s not found", n, k)
			}
		}
		if got.GetString("ns/absent") != nil || got.Get(1) != nil {
			t.Fatalf("%d keys: an absent key found", n)
		}
	}
}

// EditStringObject gives what building the object afresh gives, and leaves
// its input alone.
func TestEditStringObject(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	want := map[string]Value{}
	obj := EditStringObject(nil, nil, nil, nil)
	for step := range 300 {
		var set, del []string
		changed := map[string]Value{}
		for range r.IntN(12) {
			k := fmt.Sprintf("ns%d/o%03d", r.IntN(3), r.IntN(100))
			if _, ok := changed[k]; ok {
				continue
			}
			if _, ok := want[k]; ok && r.IntN(3) == 0 {
				changed[k] = nil
				del = append(del, k)
			} else {
				changed[k] = fmt.Sprintf("v%d", step)
				set = append(set, k)
			}
		}
		slices.Sort(set)
		slices.Sort(del)
		values := make([]Value, len(set))
		for i, k := range set {
			values[i] = changed[k]
		}
		before := ToAST(obj)
		next := EditStringObject(obj, set, values, del)
		for k, v := range changed {
			if v == nil {
				delete(want, k)
			} else {
				want[k] = v
			}
		}
		keys := slices.Sorted(maps.Keys(want))
		kvs := make([]Value, 0, 2*len(keys))
		for _, k := range keys {
			kvs = append(kvs, k, want[k])
		}
		if !equal(next, NewObject(kvs...)) {
			t.Fatalf("step %d: %v, want %v", step, ToAST(next), keys)
		}
		for _, k := range keys {
			if next.GetString(k) != want[k] {
				t.Fatalf("step %d: %s not found", step, k)
			}
		}
		if !equal(FromAST(before), obj) {
			t.Fatalf("step %d: input changed", step)
		}
		obj = next
	}
}
