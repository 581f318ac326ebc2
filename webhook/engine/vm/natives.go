package vm

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

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
	// indexof_n and substring of ASCII strings (host names), as topdown's
	// ASCII paths compute them: byte offsets are rune offsets.
	ast.IndexOfN.Name: func(args []Value) (Value, bool) {
		base, ok1 := args[0].(string)
		search, ok2 := args[1].(string)
		if !ok1 || !ok2 || search == "" || !ascii(base) || !ascii(search) {
			return nil, false
		}
		out := newArray(strings.Count(base, search))
		for offset := 0; ; {
			i := strings.Index(base[offset:], search)
			if i < 0 {
				break
			}
			out.elems = append(out.elems, intNumber(offset+i))
			offset += i + 1
		}
		return out, true
	},
	ast.Substring.Name: func(args []Value) (Value, bool) {
		base, ok := args[0].(string)
		start, ok1 := smallInt(args[1])
		length, ok2 := smallInt(args[2])
		if !ok || !ok1 || !ok2 || start < 0 || !ascii(base) {
			return nil, false
		}
		switch {
		case start >= len(base):
			return "", true
		case length < 0:
			return base[start:], true
		}
		return base[start : start+min(length, len(base)-start)], true
	},
	// a | b of two sets.
	ast.Or.Name: func(args []Value) (Value, bool) {
		a, ok1 := args[0].(*Set)
		b, ok2 := args[1].(*Set)
		if !ok1 || !ok2 {
			return nil, false
		}
		out := &Set{elems: make([]Value, 0, len(a.elems)+len(b.elems))}
		for _, e := range a.elems {
			out.add(e)
		}
		for _, e := range b.elems {
			out.add(e)
		}
		return out, true
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

// ascii: s is all ASCII.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// smallInt is v as an int when v is a number written as one.
func smallInt(v Value) (int, bool) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(string(n))
	return i, err == nil && i > -1<<31 && i < 1<<31
}
