package vm_test

import (
	"context"
	"errors"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/egress-guard/egress-guard/policies"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

func compile(t *testing.T, modules map[string]string) *ast.Compiler {
	t.Helper()
	parsed := map[string]*ast.Module{}
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		parsed[name] = m
	}
	c := ast.NewCompiler()
	if c.Compile(parsed); c.Failed() {
		t.Fatal(c.Errors)
	}
	return c
}

// run evaluates query with the VM; it returns the query's value (nil when
// undefined).
func run(t *testing.T, c *ast.Compiler, query string, input, data ast.Value) (*ast.Term, error) {
	t.Helper()
	var in vm.Value
	if input != nil {
		in = vm.FromAST(input)
	}
	return runNative(t, c, query, in, vm.FromAST(data))
}

// program plans and compiles query.
func program(t *testing.T, c *ast.Compiler, query string) *vm.Program {
	t.Helper()
	pol, err := vm.Plan(t.Context(), rego.Query(query), rego.Compiler(c))
	if err != nil {
		t.Fatalf("planning %s: %v", query, err)
	}
	p, err := vm.Compile(pol)
	if err != nil {
		t.Fatalf("compiling %s: %v", query, err)
	}
	return p
}

func runNative(t *testing.T, c *ast.Compiler, query string, input, data vm.Value) (*ast.Term, error) {
	t.Helper()
	p := program(t, c, query)
	plans := p.Plans()
	if len(plans) != 1 {
		t.Fatalf("plans: %v", plans)
	}
	rs, err := p.Eval(t.Context(), plans[0], input, data)
	if err != nil {
		return nil, err
	}
	var out []*ast.Term
	for _, r := range rs.Elems() {
		for _, v := range r.(*vm.Object).Values() {
			out = append(out, ast.NewTerm(vm.ToAST(v)))
		}
	}
	switch len(out) {
	case 0:
		return nil, nil
	case 1:
		return out[0], nil
	}
	t.Fatalf("%s: %d results", query, len(out))
	return nil, nil
}

// topdownValue evaluates query with OPA's interpreter.
func topdownValue(t *testing.T, c *ast.Compiler, query string, input, data ast.Value) (*ast.Term, error) {
	t.Helper()
	opts := []func(*rego.Rego){rego.Query(query), rego.Compiler(c)}
	if data != nil {
		opts = append(opts, rego.ParsedInput(input))
	}
	pq, err := rego.New(opts...).PrepareForEval(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(t.Context(), rego.EvalParsedInput(input))
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	v, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return ast.NewTerm(v), nil
}

// TestRegoTests runs every test rule of the embedded pack through the VM:
// each must hold, as it does under `opa test`.
func TestRegoTests(t *testing.T) {
	modules := map[string]string{}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") {
			return err
		}
		src, err := fs.ReadFile(policies.FS, path)
		modules[path] = string(src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c := compile(t, modules)
	var tests []string
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			name := r.Head.Name.String()
			if strings.HasPrefix(name, "test_") {
				tests = append(tests, m.Package.Path.String()+"."+name)
			}
		}
	}
	sort.Strings(tests)
	if len(tests) < 100 {
		t.Fatalf("found %d test rules", len(tests))
	}
	for _, q := range tests {
		t.Run(strings.TrimPrefix(q, "data.egressguard."), func(t *testing.T) {
			v, err := run(t, c, q, nil, ast.NewObject())
			if err != nil {
				t.Fatal(err)
			}
			if v == nil || !v.Equal(ast.BooleanTerm(true)) {
				t.Fatalf("%s = %v, want true", q, v)
			}
		})
	}
}

// TestSemantics compares the VM with topdown on constructs whose control
// flow the planner compiles into nested blocks and breaks.
func TestSemantics(t *testing.T) {
	const pkg = `package t

import rego.v1

`
	cases := []struct {
		name, rules, query string
		input              string
	}{
		{"every", `p if every x in input.xs { x > 0 }`, "data.t.p", `{"xs": [1, 2]}`},
		{"every fails", `p if every x in input.xs { x > 1 }`, "data.t.p", `{"xs": [1, 2]}`},
		{"every over an object", `p if every k, v in input.o { k != v }`, "data.t.p", `{"o": {"a": "b"}}`},
		{"not", `p if not input.a`, "data.t.p", `{"b": 1}`},
		{"not on false", `p if not input.a`, "data.t.p", `{"a": false}`},
		{"not defined", `p if not input.a`, "data.t.p", `{"a": 1}`},
		{"else", "p := 1 if input.a == 1\nelse := 2 if input.a == 2\nelse := 3", "data.t.p", `{"a": 2}`},
		{"else default", "p := 1 if input.a == 1\nelse := 3", "data.t.p", `{"a": 9}`},
		{"default", "default p := false\np if input.a", "data.t.p", `{}`},
		{"partial set", `s contains x if { some x in input.xs; x != "b" }`, "data.t.s", `{"xs": ["a", "b", "c"]}`},
		{"partial object", `o[k] := v if { some k, v in input.o; v > 1 }`, "data.t.o", `{"o": {"a": 1, "b": 2}}`},
		{"array comprehension", `p := [x | some x in input.xs; x > 1]`, "data.t.p", `{"xs": [1, 2, 3]}`},
		{"set comprehension", `p := {x | some x in input.xs}`, "data.t.p", `{"xs": [1, 1, 2]}`},
		{"object comprehension", `p := {k: 1 | some k in input.xs}`, "data.t.p", `{"xs": ["a", "b"]}`},
		{"functions", "f(x) := x + 1 if x > 0\nf(x) := 0 if x <= 0\np := [f(1), f(-1)]", "data.t.p", `{}`},
		{"function undefined", "f(x) := x if x > 0\np := f(-1)", "data.t.p", `{}`},
		{"builtin error is undefined", `p := to_number(input.s)`, "data.t.p", `{"s": "x"}`},
		{"sprintf", `p := sprintf("%s:%d", [input.s, input.n])`, "data.t.p", `{"s": "a", "n": 3}`},
		{"membership", `p if "b" in input.xs`, "data.t.p", `{"xs": ["a", "b"]}`},
		{"set lookup", `s := {"a", "b"}` + "\n" + `p := s["a"]`, "data.t.p", `{}`},
		{"array index", `p := input.xs[1]`, "data.t.p", `{"xs": ["a", "b"]}`},
		{"array index out of range", `p := input.xs[5]`, "data.t.p", `{"xs": ["a"]}`},
		{"dot on a scalar", `p := input.s.x`, "data.t.p", `{"s": "a"}`},
		{"numbers compare by value", `p if input.a == 1`, "data.t.p", `{"a": 1.0}`},
		{"nested every", `p if every x in input.xs { every y in x { y != 0 } }`, "data.t.p", `{"xs": [[1], [2, 0]]}`},
		{"with input", "q if input.a == 1\np if q with input as {\"a\": 1}", "data.t.p", `{"a": 2}`},
		{"with data", "q := data.cfg.x\np := x if x := q with data.cfg.x as 5", "data.t.p", `{}`},
		{"count", `p := count(input.xs)`, "data.t.p", `{"xs": [1, 2, 3]}`},
		{"object.get", `p := object.get(input, ["a", "b"], "d")`, "data.t.p", `{"a": {}}`},
		{"unification", `p := y if [_, y] = input.xs`, "data.t.p", `{"xs": [1, 2]}`},
		{"in array", `p := [1 in input.xs, 9 in input.xs, {"a": 1} in input.os]`, "data.t.p", `{"xs": [1, 2], "os": [{"a": 1.0}]}`},
		{"in set and object", `p := [1 in input.s, 3 in input.o, "k" in input.o]`, "data.t.p", `{"s": [1, 2], "o": {"k": 3}}`},
		{"in a set", `s := {1, 2}
p := [1 in s, 3 in s]`, "data.t.p", `{}`},
		{"in a string", `p := "a" in input.s`, "data.t.p", `{"s": "abc"}`},
		{"neq by value", `p := [input.a != 1, input.a != "1", [1] != [1.0]]`, "data.t.p", `{"a": 1.0}`},
		{"count of each kind", `p := [count("héllo"), count(input.o), count({1, 2}), count(input.xs)]`, "data.t.p", `{"o": {"a": 1}, "xs": []}`},
		{"count of a number", `p := count(input.n)`, "data.t.p", `{"n": 3}`},
		{"startswith and friends", `p := [startswith("abc", "ab"), endswith("abc", "bc"), contains("abc", "x")]`, "data.t.p", `{}`},
		{"startswith of a number", `p := startswith(input.n, "1")`, "data.t.p", `{"n": 12}`},
		{"comparisons", `p := [1 < 2, 2.5 > 2, "a" < "b", 1 < "a", [1] > 1, null < false]`, "data.t.p", `{}`},
		{"object.get", `p := [object.get(input, "a", 0), object.get(input, ["a", "b", 1], 0), object.get(input, ["x"], "d"), object.get(input, [], 0)]`, "data.t.p", `{"a": {"b": [5, 6]}}`},
		{"object.get of a non-object", `p := object.get(input.xs, 0, "d")`, "data.t.p", `{"xs": [1]}`},
		{"sets of composites", `p := {[1, {"a": 1}], [1, {"a": 1.0}], {"x"}, {"x"}}`, "data.t.p", `{}`},
		{"objects with composite keys", `p := {[1]: "a", {"k": 1}: "b"}[[1]]`, "data.t.p", `{}`},
		{"sprintf", `p := [sprintf("%s:%d %v", ["a", 3, "b"]), sprintf("%v %d", [-4, 12345678901]), sprintf("%v", [1.5]), sprintf("%v", [[1, "a"]]), sprintf("%d", [1e3]), sprintf("%s", ["x", "y"])]`, "data.t.p", `{}`},
		{"sprintf of input numbers", `p := sprintf("%d/%v/%s", [input.a, input.b, input.c])`, "data.t.p", `{"a": 80, "b": 2.50, "c": {"k": 1}}`},
		{"walk", `p := [path | walk(input.spec, [path, v]); is_string(v)]`, "data.t.p", `{"spec": {"hosts": ["a", "b"], "http": [{"route": [{"destination": {"host": "c"}}]}]}}`},
		{"set iteration is sorted", "s := {\"b\", \"c\", \"a\", \"B\"}\np := concat(\",\", [x | some x in s])", "data.t.p", `{}`},
		{"object iteration is sorted", `p := concat(",", [k | some k, _ in object.union(input.o, {"m": 1, "b": 2})])`, "data.t.p", `{"o": {"z": 1, "a": 2}}`},
		{"a set lookup gives the key", "s := {1.0, \"a\"}\np := sprintf(\"%v %v\", [s[1], s[1.00]])", "data.t.p", `{}`},
		{"zeros in a large set", `p := [count({x | some x in input.xs}), count({x | some x in input.xs} & {0})]`, "data.t.p", `{"xs": [0, -0, 0.0, -0.0, 0e3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79]}`},
		{"ones in a large object", `p := count({x: 1 | some x in input.xs})`, "data.t.p", `{"xs": [1, 1.0, 10e-1, 100e-2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79]}`},
		{"indexof_n", `p := [indexof_n(input.s, "."), indexof_n(input.s, "b.c"), indexof_n("ünï.cödé.x", "."), indexof_n(input.s, "zz")]`, "data.t.p", `{"s": "a.b.c.b.c"}`},
		{"indexof_n of nothing", `p := indexof_n(input.s, "")`, "data.t.p", `{"s": "a.b"}`},
		{"substring", `p := [substring(input.s, 1, -1), substring(input.s, 0, 100), substring(input.s, 9, 2), substring(input.s, 2, 3), substring("ünïcödé", 1, 3), substring(input.s, 1.0, 2), substring("", 0, 1)]`, "data.t.p", `{"s": "a.b.c"}`},
		{"substring at a negative offset", `p := substring(input.s, -1, 2)`, "data.t.p", `{"s": "a.b"}`},
		{"set union", `p := [{2} | {3, 1}, {"b", [1]} | {[1.0], "a"}, set() | set(), {1} | set()]`, "data.t.p", `{}`},
		{"set union of an array", `p := input.a | {3, 1}`, "data.t.p", `{"a": [2, 1]}`},
		{"set union of two sets", "s1 := {x | some x in input.xs}\ns2 := {x | some x in input.ys}\np := [x | some x in s1 | s2]", "data.t.p", `{"xs": [3, 1, 2], "ys": [2, 0, -0, 4]}`},
		{"some in nested", `p contains [x, y] if { some x in input.xs; some y in input.ys; x < y }`, "data.t.p", `{"xs": [1, 3], "ys": [2, 4]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := compile(t, map[string]string{"t.rego": pkg + tc.rules})
			input := ast.MustParseTerm(tc.input).Value
			want, wantErr := topdownValue(t, c, tc.query, input, nil)
			got, err := run(t, c, tc.query, input, ast.NewObject())
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, topdown's %v", err, wantErr)
			}
			if got != nil {
				// as rego's results: sets become arrays
				js, err := ast.JSON(got.Value)
				if err != nil {
					t.Fatal(err)
				}
				v, err := ast.InterfaceToValue(js)
				if err != nil {
					t.Fatal(err)
				}
				got = ast.NewTerm(v)
			}
			if (got == nil) != (want == nil) || (got != nil && !got.Equal(want)) {
				t.Fatalf("%s = %v, topdown's %v", tc.query, got, want)
			}
		})
	}
}

// TestConflict: a complete rule with two values is an evaluation error that
// names the rule's place, as in topdown.
func TestConflict(t *testing.T) {
	c := compile(t, map[string]string{"t.rego": "package t\n\np := x if some x in input.xs\n"})
	_, err := run(t, c, "data.t.p", ast.MustParseTerm(`{"xs": [1, 2]}`).Value, ast.NewObject())
	var te *topdown.Error
	if !errors.As(err, &te) || te.Code != topdown.ConflictErr || te.Location == nil || te.Location.File != "t.rego" {
		t.Fatalf("error: %#v", err)
	}
	_, err = topdownValue(t, c, "data.t.p", ast.MustParseTerm(`{"xs": [1, 2]}`).Value, nil)
	if !errors.As(err, &te) || te.Code != topdown.ConflictErr {
		t.Fatalf("topdown's error: %v", err)
	}
}

// TestCancel: a cancelled context stops a long evaluation.
func TestCancel(t *testing.T) {
	c := compile(t, map[string]string{"t.rego": "package t\n\np := count([1 | some x in numbers.range(1, 100000); x > 0])\n"})
	p := program(t, c, "data.t.p")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Eval(ctx, p.Plans()[0], vm.NewObject(), vm.NewObject()); !errors.Is(err, context.Canceled) {
		t.Fatalf("error: %v", err)
	}
}

// TestInputKeys: the top-level input keys a program reads, through helper
// functions too; any other use of the input means all of them.
func TestInputKeys(t *testing.T) {
	keys := func(rules string) ([]string, bool) {
		t.Helper()
		c := compile(t, map[string]string{"t.rego": "package t\n\n" + rules})
		return program(t, c, "data.t.p").InputKeys()
	}
	if k, all := keys("f(x) := input.b.c if x\np if { input.a; f(true) }\n"); all || strings.Join(k, ",") != "a,b" {
		t.Errorf("keys %v, all %v", k, all)
	}
	for _, rules := range []string{
		"p if { some k; input[k] }\n",
		"p if { some x in input; x }\n",
		"p := object.get(input, \"a\", 0)\n",
		"p := x if { x := input }\n",
		"f(x) := x.a\np := f(input)\n",
	} {
		if k, all := keys(rules); !all {
			t.Errorf("%q: keys %v, want all", rules, k)
		}
	}
}
