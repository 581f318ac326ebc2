package vm

import (
	"cmp"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// compare orders values as ast.Compare orders their ast forms: by kind
// first (undefined < null < boolean < number < string < array < object <
// set), then numbers by value, strings bytewise, arrays element by element
// and then by length, objects by their sorted keys and values, sets by their
// sorted elements. Sets and objects iterate in this order in topdown, and so
// here.
func compare(a, b Value) int {
	if x, ok := a.(string); ok {
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	}
	ka, kb := kindOf(a), kindOf(b)
	if ka != kb {
		return cmp.Compare(ka, kb)
	}
	switch x := a.(type) {
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case ast.Number:
		y := b.(ast.Number)
		if x == y {
			return 0
		}
		return ast.NumberCompare(x, y)
	case *Array:
		y := b.(*Array)
		for i := range min(len(x.elems), len(y.elems)) {
			if c := compare(x.elems[i], y.elems[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(x.elems), len(y.elems))
	case *Object:
		y := b.(*Object)
		x.sort()
		y.sort()
		for i := range min(len(x.kvs), len(y.kvs)) {
			if c := compare(x.kvs[i].k, y.kvs[i].k); c != 0 {
				return c
			}
			if c := compare(x.kvs[i].v, y.kvs[i].v); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(x.kvs), len(y.kvs))
	case *Set:
		y := b.(*Set)
		x.sort()
		y.sort()
		for i := range min(len(x.elems), len(y.elems)) {
			if c := compare(x.elems[i], y.elems[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(x.elems), len(y.elems))
	}
	// undefined, null
	return 0
}

// less is compare(a, b) < 0.
func less(a, b Value) bool {
	if x, ok := a.(string); ok {
		if y, ok := b.(string); ok {
			return x < y
		}
	}
	return compare(a, b) < 0
}

func kindOf(v Value) int {
	switch v.(type) {
	case nil:
		return 0
	case Null:
		return 1
	case bool:
		return 2
	case ast.Number:
		return 3
	case string:
		return 4
	case *Array:
		return 5
	case *Object:
		return 6
	case *Set:
		return 7
	}
	return 8
}
