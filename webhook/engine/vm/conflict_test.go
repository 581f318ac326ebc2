package vm_test

import "testing"

// TestConflicts: a rule or function with more than one value is topdown's
// conflict error: its message lists the values with their rules' places,
// and it names the rule that produced the second one.
func TestConflicts(t *testing.T) {
	for _, tc := range []struct{ name, rules, query, input string }{
		{"two rules", "p := 1 if input.a\np := 2 if input.b", "data.t.p", `{"a": true, "b": true}`},
		{"rules that agree", "p := 1 if input.a\np := 1 if input.b\np := 2 if input.c", "data.t.p", `{"a": true, "b": true, "c": true}`},
		{"one rule", "p := x if some x in input.xs", "data.t.p", `{"xs": [3, 1, 2]}`},
		{"one rule, then another", "p := x if some x in input.xs\np := 9 if input.a", "data.t.p", `{"xs": [1, 1], "a": true}`},
		{"from the second rule", "p := 1 if input.a\np := x if some x in input.xs", "data.t.p", `{"xs": [1, 2, 3], "a": true}`},
		{"else", "p := 1 if input.a\nelse := 2\np := 3 if input.b", "data.t.p", `{"b": true}`},
		{"function", "f(x) := 1 if x > 0\nf(x) := 2 if x > 1\np := f(input.n)", "data.t.p", `{"n": 5}`},
		{"function, by iteration", "f(x) := y if some y in x\np := f(input.xs)", "data.t.p", `{"xs": [{"a": [1, 2]}, {"b": 1}]}`},
		{"many values", "p := x if some x in input.xs", "data.t.p", `{"xs": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}`},
		{"long values", "p := x if some x in input.xs", "data.t.p", `{"xs": ["` + longString + `", "b"]}`},
		{"ref heads", "a.b := 1 if input.a\na.b := 2 if input.b\np := a", "data.t.p", `{"a": true, "b": true}`},
		{"object comprehension", "p := {x[0]: x[1] | some x in input.pairs}", "data.t.p", `{"pairs": [["a", 1], ["a", 2]]}`},
		{"keys in rule heads", "s[\"a\"] := 1\ns[null] := input.xs if input.a\ns[null] := input.a if input.a", "data.t.s", `{"a": "x", "xs": []}`},
		{"keys in rule heads and a variable", "p.q.r := 1\np.q[s] := 2 if s := \"r\"", "data.t.p", `{}`},
		{"partial object", "o[x[0]] := x[1] if some x in input.pairs\np := o", "data.t.p", `{"pairs": [["a", 1], ["a", 2]]}`},
		{"in a function called twice", "f(x) := 1 if x > 0\nf(x) := 2 if x > 1\np := [f(input.a), f(input.b)]", "data.t.p", `{"a": 1, "b": 2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := agreement{
				modules: map[string]string{"policies/t.rego": "package t\n\n" + tc.rules + "\n"},
				query:   tc.query, input: tc.input,
			}.agree(t)
			if v.err == nil {
				t.Fatalf("no conflict: %v", v)
			}
		})
	}
}

const longString = "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789"
