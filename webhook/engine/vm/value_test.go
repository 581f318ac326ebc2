package vm

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/valyala/fastjson"
)

// orderValues covers every kind and the numbers OPA writes in several ways.
var orderValues = []string{
	`null`, `false`, `true`,
	`0`, `-0`, `0.0`, `-0.0`, `1`, `1.0`, `1e0`, `10e-1`, `100e-2`, `-1`, `0.5`, `2`, `1.5`, `10`, `1e2`,
	`0.1`, `0.30000000000000004`, `3.14`, `9007199254740992`, `9007199254740993`,
	`100000000000000000000`, `100000000000000000001`, `1e20`, `1e400`, `10e399`, `-1e400`, `1e-400`,
	`""`, `"a"`, `"b"`, `"aa"`, `"B"`, `"é"`,
	`[]`, `[1]`, `[1.0]`, `[1, 2]`, `[2]`, `[1, 0]`, `["a"]`, `[[1]]`,
	`{}`, `{"a": 1}`, `{"a": 1.0}`, `{"a": 2}`, `{"b": 0}`, `{"a": 1, "b": 1}`, `{1: "a"}`, `{[1]: 1}`,
	`set()`, `{1}`, `{1.0}`, `{2}`, `{1, 2}`, `{"a"}`, `{{1}}`, `{[1], {"a": 1}}`,
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// TestCompareIsOPAs: compare orders values as ast.Compare orders their ast
// forms, equal holds where it gives 0, and equal values hash alike.
func TestCompareIsOPAs(t *testing.T) {
	for _, a := range orderValues {
		for _, b := range orderValues {
			x, y := ast.MustParseTerm(a).Value, ast.MustParseTerm(b).Value
			vx, vy := FromAST(x), FromAST(y)
			want := sign(ast.Compare(x, y))
			if got := sign(compare(vx, vy)); got != want {
				t.Errorf("compare(%s, %s) = %d, ast.Compare %d", a, b, got, want)
			}
			if equal(vx, vy) != (want == 0) {
				t.Errorf("equal(%s, %s) = %v", a, b, equal(vx, vy))
			}
			if want == 0 && hash(vx) != hash(vy) {
				t.Errorf("%s and %s are equal, their hashes differ", a, b)
			}
		}
	}
}

// TestSetsOfEqualNumbers: sets hold one of equal numbers, small or indexed
// (from indexFrom elements), and find it by any of its forms.
func TestSetsOfEqualNumbers(t *testing.T) {
	for _, n := range []int{1, indexFrom + 4} {
		s := &Set{}
		for i := range n - 1 {
			s.add(intNumber(1000 + i))
		}
		for _, z := range []string{"0", "-0", "0.0", "-0.0", "0e5"} {
			s.add(ast.Number(z))
		}
		for _, z := range []string{"1e400", "10e399"} {
			s.add(ast.Number(z))
		}
		if s.Len() != n+1 {
			t.Errorf("%d: %d elements: %v", n, s.Len(), s.elems)
		}
		for _, z := range []string{"0", "-0", "0.00", "1e400", "100e398"} {
			if s.find(ast.Number(z)) < 0 {
				t.Errorf("%d: %s not found", n, z)
			}
		}
	}
}

// TestMadeInOrder: the values a caller makes (from JSON, from ast values,
// with NewObject and Insert) have their keys and elements in order, so
// that evaluations sharing them only read them.
func TestMadeInOrder(t *testing.T) {
	doc, err := fastjson.Parse(`{"z": {"y": 1, "b": [{"q": 1, "c": 2}]}, "a": 1, "m": null}`)
	if err != nil {
		t.Fatal(err)
	}
	o := NewObject("z", ast.Number("1"), "a", ast.Number("2"))
	o.Insert("m", ast.Number("3"))
	o.Insert("b", ast.Number("4"))
	s := &Set{}
	s.add("z")
	s.add("a")
	Share(s)
	for _, v := range []Value{FromJSON(doc, nil), FromAST(ast.MustParseTerm(`{"z": 1, "a": {3, 1, 2}}`).Value), o, s} {
		var check func(v Value)
		check = func(v Value) {
			switch x := v.(type) {
			case *Object:
				if x.unsorted {
					t.Errorf("unsorted: %v", ToAST(x))
				}
				for i, p := range x.kvs {
					if i > 0 && compare(x.kvs[i-1].k, p.k) >= 0 {
						t.Errorf("keys out of order: %v", ToAST(x))
					}
					check(p.v)
				}
			case *Set:
				if x.unsorted {
					t.Errorf("unsorted: %v", ToAST(x))
				}
			case *Array:
				for _, e := range x.elems {
					check(e)
				}
			}
		}
		check(v)
	}
}
