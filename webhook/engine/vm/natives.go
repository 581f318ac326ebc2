package vm

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// native runs the commonest built-ins on the evaluator's values, for the
// argument types where their result is plain; ok false leaves the call to
// OPA's implementation (other types, errors).
type native func(args []Value) (result Value, ok bool)

var natives = map[string]native{
	ast.Member.Name: func(args []Value) (Value, bool) {
		switch c := args[1].(type) {
		case *Array:
			for _, e := range c.elems {
				if equal(e, args[0]) {
					return true, true
				}
			}
			return false, true
		case *Set:
			return c.find(args[0]) >= 0, true
		case *Object:
			for _, p := range c.kvs {
				if equal(p.v, args[0]) {
					return true, true
				}
			}
			return false, true
		}
		return nil, false
	},
	ast.NotEqual.Name: func(args []Value) (Value, bool) {
		return !equal(args[0], args[1]), true
	},
	ast.Count.Name: func(args []Value) (Value, bool) {
		switch args[0].(type) {
		case string, *Array, *Object, *Set:
			n, _ := length(args[0])
			return intNumber(n), true
		}
		return nil, false
	},
	ast.StartsWith.Name: strings2(strings.HasPrefix),
	ast.EndsWith.Name:   strings2(strings.HasSuffix),
	ast.Contains.Name:   strings2(strings.Contains),
	// Comparisons order any two values as ast.Compare does.
	ast.GreaterThan.Name: func(args []Value) (Value, bool) {
		return compare(args[0], args[1]) > 0, true
	},
	ast.GreaterThanEq.Name: func(args []Value) (Value, bool) {
		return compare(args[0], args[1]) >= 0, true
	},
	ast.LessThanEq.Name: func(args []Value) (Value, bool) {
		return compare(args[0], args[1]) <= 0, true
	},
	ast.ObjectGet.Name: func(args []Value) (Value, bool) {
		obj, ok := args[0].(*Object)
		if !ok {
			return nil, false
		}
		var cur Value = obj
		if path, ok := args[1].(*Array); ok {
			for _, k := range path.elems {
				if cur = dot(cur, k); cur == nil {
					break
				}
			}
		} else {
			cur = obj.Get(args[1])
		}
		if cur == nil {
			return args[2], true
		}
		return cur, true
	},
	ast.Sprintf.Name: func(args []Value) (Value, bool) {
		// Strings and integers as OPA passes them to fmt; other values
		// (floats, big numbers, composites) are left to OPA.
		format, ok1 := args[0].(string)
		list, ok2 := args[1].(*Array)
		if !ok1 || !ok2 {
			return nil, false
		}
		vals := make([]any, len(list.elems))
		for i, e := range list.elems {
			switch x := e.(type) {
			case string:
				vals[i] = x
			case ast.Number:
				if strings.ContainsAny(string(x), ".eE") {
					return nil, false
				}
				n, err := strconv.ParseInt(string(x), 10, 64)
				if err != nil {
					return nil, false
				}
				vals[i] = n
			default:
				return nil, false
			}
		}
		return fmt.Sprintf(format, vals...), true
	},
	ast.LessThan.Name: func(args []Value) (Value, bool) {
		return compare(args[0], args[1]) < 0, true
	},
}

func strings2(f func(a, b string) bool) native {
	return func(args []Value) (Value, bool) {
		a, ok1 := args[0].(string)
		b, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, false
		}
		return f(a, b), true
	}
}
