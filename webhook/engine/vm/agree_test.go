package vm_test

import "testing"

// TestAgreesWithTopdown: policies whose results depend on the finer points
// of Rego's semantics give topdown's values and errors.
func TestAgreesWithTopdown(t *testing.T) {
	cases := []struct {
		name, rules, query, input string
		strict                    bool
	}{
		// iteration follows OPA's order of keys and elements
		{"object keys in order", `p := [k | some k, _ in {"b": 1, "a": 2, "c": 3}]`, "data.t.p", ``, false},
		{"set elements in order", `p := [x | some x in {3, 1, 2, "a", null, false, [1], {"k": 1}, {1}}]`, "data.t.p", ``, false},
		{"input keys in order", `p := concat(",", [k | some k, _ in input])`, "data.t.p", `{"zeta": 1, "alpha": 2, "mid": 3}`, false},
		{"numbers by value", `p := [x | some x in {10, 9.5, -1, 1e2, 0.001, 100000000000000000000}]`, "data.t.p", ``, false},
		{"composite keys in order", `p := [k | some k, _ in {[2]: 1, [1, 2]: 2, [1]: 3, {"b": 1}: 4, {"a": 2}: 5}]`, "data.t.p", ``, false},
		{"sets of sets in order", `p := [x | some x in {{2}, {1, 3}, {1}, set()}]`, "data.t.p", ``, false},
		{"partial set iterated", "s contains x if some x in input.xs\np := [x | some x in s]", "data.t.p", `{"xs": ["c", "a", "b"]}`, false},
		{"partial object iterated", "o[k] := 1 if some k in input.xs\np := [k | some k, _ in o]", "data.t.p", `{"xs": ["c", "a", "b"]}`, false},
		{"messages built from a set", "s contains x if some x in input.xs\np := sprintf(\"%v\", [[x | some x in s]])", "data.t.p", `{"xs": ["c", "a", "b"]}`, false},
		// numbers
		{"set lookup yields the key", `s := {1, "a"}` + "\np := [s[1.0], s[1]]", "data.t.p", ``, false},
		{"zeros alike in large sets", `s := {x | some x in numbers.range(1, 20)} | {0}` + "\np := [count(s | {-0, 0.0}), s[-0], s[0.0]]", "data.t.p", ``, false},
		{"equal numbers alike in large sets", `s := {x | some x in numbers.range(1, 20)}` + "\np := [count(s | {1.0, 1e0, 10e-1, 2.00}), s[1e1]]", "data.t.p", ``, false},
		{"big numbers", `p := [1e400 > 1e300, 100000000000000000001 > 100000000000000000000, {1e400, 1e400}]`, "data.t.p", ``, false},
		{"float comparisons", `p := [0.1 + 0.2 == 0.3, 0.30000000000000004 > 0.3, 1.5 < 2, -0 == 0, 1e-400 > 0]`, "data.t.p", ``, false},
		{"comparisons across kinds", `p := [null < false, false < 0, 0 < "", "" < [], [] < {}, {} < set(), [1, 2] < [1, 3], [1] < [1, 0], {"a": 1} < {"a": 2}, {1} < {2}, {1, 2} > {1}]`, "data.t.p", ``, false},
		{"equal number keys", `p := [{1: "a", 1.0: "b"}, {input.one: "a", input.onef: "b"}, {x: "a" | some x in [1, 1.0]}, {1, 1.0, input.onef}]`, "data.t.p", `{"one": 1, "onef": 1.0}`, false},
		{"an undefined element", `p := [input.missing, 1]`, "data.t.p", `{}`, false},
		{"numbers keep their form", `s := {1.0}` + "\np := [[x | some x in s; x == 1], {\"k\": [1, input.onef]}[\"k\"]]", "data.t.p", `{"onef": 1.0}`, false},
		{"number keys", `p := {1: "a", 2.0: "b"}` + "\nq := [p[1.0], p[2]]", "data.t.q", ``, false},
		{"sprintf of numbers", `p := [sprintf("%v", [1.0]), sprintf("%d", [100000000000000000000]), sprintf("%v", [1e400]), sprintf("%.2f", [1.005]), sprintf("%v %v", [-0, 0.1])]`, "data.t.p", ``, false},
		{"count of a large object", `p := count({k: 1 | some k in numbers.range(1, 2000)})`, "data.t.p", ``, false},
		// relations
		{"walk finds every node", `p contains path if { walk(input, [path, v]); is_string(v) }`, "data.t.p", `{"a": {"b": "x", "c": ["y", 1, "z"]}, "d": "w"}`, false},
		{"walk as a test", `p if walk(input)`, "data.t.p", `{"a": 1}`, false},
		{"walk in a comprehension", `p := [v | walk(input.spec, [_, v]); is_number(v)]`, "data.t.p", `{"spec": {"z": 3, "a": [1, 2]}}`, false},
		// built-in errors
		{"built-in error undefined", `p := to_number("x")`, "data.t.p", ``, false},
		{"built-in error strict", `p := to_number("x")`, "data.t.p", ``, true},
		{"built-in type error strict", `p := count(input.n)`, "data.t.p", `{"n": 1}`, true},
		{"first built-in error wins", "p := [to_number(\"x\"), 1 / 0]", "data.t.p", ``, true},
		{"object.get on a set", `p := [object.get(input, ["s", "a"], "d"), object.get({"s": {"a"}}, ["s", "a"], "d"), object.get({"s": {"a"}}, ["s", "b"], "d")]`, "data.t.p", `{"s": ["a"]}`, false},
		{"in on objects", `p := ["v" in {"k": "v"}, "k" in {"k": "v"}, "k", "v" in {"k": "v"}]`, "data.t.p", ``, false},
		{"some k, v in object", `p := [k | some k, "v" in {"a": "v", "b": "w", "c": "v"}]`, "data.t.p", ``, false},
		// rules
		{"default function", "default f(_) := 0\nf(x) := 1 if x > 1\np := [f(0), f(5)]", "data.t.p", ``, false},
		{"else chain", "f(x) := 1 if x == 1\nelse := 2 if x == 2\nelse := 3\np := [f(1), f(2), f(3)]", "data.t.p", ``, false},
		{"every over empty", `p if every x in [] { x > 1 }`, "data.t.p", ``, false},
		{"every over a set", `p if every x in {1, 2} { x > 0 }`, "data.t.p", ``, false},
		{"with a function", "f(x) := x + 1\ng(x) := x * 10\np := y if y := f(1) with f as g", "data.t.p", ``, false},
		{"with a built-in", "f(_) := 42\np := y if y := count([1, 2]) with count as f", "data.t.p", ``, false},
		{"with a value", "p := y if y := count([1, 2]) with count as 7", "data.t.p", ``, false},
		{"with data", "q := [x | some x in data.x.y]\np := y if y := q with data.x.y as {2, 1}", "data.t.p", ``, false},
		{"package document", "a := 1\ns contains 1\nf(x) := x\ng(_) := 2\np := data.t.a", "data.t", ``, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			agreement{
				modules: map[string]string{"t.rego": "package t\n\n" + tc.rules + "\n"},
				query:   tc.query, input: tc.input, strict: tc.strict,
			}.agree(t)
		})
	}
}
