package vm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// TestPackageAsDocument: a package whose rules include functions and
// partial sets can be iterated, as topdown does it: functions are no part
// of the data document.
func TestPackageAsDocument(t *testing.T) {
	tables := `package egressguard.rules.tables

a := 1
s contains "x"
f(x) := x
g(x, y) := x + y
h(_) := 2
default k(_) := 3
o[k] := 1 if some k in ["z", "y"]
`
	for _, q := range []string{
		"p := [k | some k, _ in data.egressguard.rules.tables]",
		"p := {k: v | some k, v in data.egressguard.rules.tables}",
		"p := data.egressguard.rules.tables",
		"p := count(data.egressguard.rules)",
		"p := [k | some k, _ in data.egressguard.rules.tables; k != \"a\"]",
	} {
		t.Run(q, func(t *testing.T) {
			agreement{
				modules: map[string]string{"tables.rego": tables, "t.rego": "package t\n\n" + q + "\n"},
				query:   "data.t.p",
				data:    `{"egressguard": {"rules": {"tables": {"base": 1}}}}`,
			}.agree(t)
		})
	}
}

// TestDataDocument: the data document is read as topdown reads its store:
// a number looks up the key that is its text, and where rules and base
// data meet, the base data comes first and wins.
func TestDataDocument(t *testing.T) {
	for _, tc := range []struct{ rules, data string }{
		{"p := data.nested[2]", `{"nested": {"2": "bar"}}`},
		{"p := [x | some k in [1, 2]; x := data.nested[k]]", `{"nested": {"2": "bar"}}`},
		{"p := x if { x := data.nested; not x[2] }", `{"nested": {"2": "bar"}}`},
		{"p := data.nested[2.0]", `{"nested": {"2": "bar"}}`},
		{"p := data.pkg", `{"pkg": {"k": "base", "o": {"a": 1}}}`},
		{"p := [k | some k, _ in data.pkg]", `{"pkg": {"a": "base", "b": 2, "z": 3}}`},
		{"p := [x | some x in data.pkg]", `{"pkg": {"b": 2, "z": 3}}`},
		{"p := [x | some x in data.pkg; x != 2]", `{"pkg": {"b": 2, "z": 3}}`},
		{"p := [1 | data.pkg[_]]", `{"pkg": {"b": 2}}`},
		{"p := [.0, -.5, 1e400]", `{}`},
	} {
		t.Run(tc.rules, func(t *testing.T) {
			agreement{
				modules: map[string]string{
					"pkg.rego": "package pkg\n\nk := \"rule\"\no.b := 2\nc := 3\n",
					"t.rego":   "package t\n\n" + tc.rules + "\n",
				},
				query: "data.t.p", data: tc.data,
			}.agree(t)
		})
	}
}

// TestDynamicReferences: a rule chosen at evaluation time (data.pkgs[x])
// is called, and missing ones read the base document, as in topdown.
func TestDynamicReferences(t *testing.T) {
	modules := map[string]string{
		"a.rego": "package rules.a\n\nallow := input.user == \"alice\"\n",
		"b.rego": "package rules.b\n\nallow if input.user == \"bob\"\n",
		"t.rego": "package t\n\np := [x | some x in input.pkgs; data.rules[x].allow]\n",
	}
	for _, input := range []string{
		`{"user": "alice", "pkgs": ["a", "b", "c", 1]}`,
		`{"user": "bob", "pkgs": ["b", "c"]}`,
		`{"user": "carol", "pkgs": ["c", "d"]}`,
	} {
		agreement{modules: modules, query: "data.t.p", input: input, data: `{"rules": {"c": {"allow": true}, "d": {"allow": false}}}`}.agree(t)
	}
}

// TestUnsupported: what the evaluator does not run is refused with
// ErrUnsupported, in the policy author's terms: the file and line, the
// rule, never the plan's names.
func TestUnsupported(t *testing.T) {
	// a built-in of the caller's, none of OPA's
	decl := &rego.Function{Name: "custom.lookup", Decl: types.NewFunction(types.Args(types.S), types.S)}
	pol, err := vm.Plan(t.Context(), rego.Query("data.t.p"),
		rego.Module("policies/custom.rego", "package t\n\np := custom.lookup(\"x\")\n"),
		rego.Function1(decl, func(_ rego.BuiltinContext, a *ast.Term) (*ast.Term, error) { return a, nil }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = vm.Compile(pol)
	if !errors.Is(err, vm.ErrUnsupported) || err.Error() != "policies/custom.rego:3: the custom built-in custom.lookup: unsupported by the IR evaluator" {
		t.Fatalf("custom built-in: %v", err)
	}

	// A with's value that uses its rule's variables, which OPA's planner
	// plans as locals of the rules the with replaces.
	c, err := compileRego(map[string]string{"policies/t.rego": `package t

p contains input.a if {
	count(input.xs)
}

q contains v if {
	v := data.t.p with count as {"n": input.n / 10}
}
`}, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = programFor(t.Context(), c, "data.t.q")
	if !errors.Is(err, vm.ErrUnsupported) || !strings.HasPrefix(err.Error(), `policies/t.rego:4: "count(input.xs)" reads a value`) {
		t.Fatalf("with value of variables: %v", err)
	}

	// OPA's planner panics on a function a with replaces by one that
	// calls it.
	c, err = compileRego(map[string]string{"t.rego": `package t

p(x) := x if {
	count(x)
}

q := v if {
	v := p([1]) with count as p
}
`}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := programFor(t.Context(), c, "data.t.q"); !errors.Is(err, vm.ErrUnsupported) {
		t.Fatalf("planner panic: %v", err)
	}

	// Malformed plans: never another error, and no plan names.
	loc := ir.Location{File: 0, Row: 7, Col: 1}
	fn := &ir.Func{
		Name: "g0.data.t.f", Path: []string{"g0", "t", "f"}, Params: []ir.Local{0, 1, 2}, Return: 3,
		Blocks: []*ir.Block{{Stmts: []ir.Stmt{&ir.ReturnLocalStmt{Source: 3}}}},
	}
	for name, stmt := range map[string]ir.Stmt{
		"arguments":    &ir.CallStmt{Func: "g0.data.t.f", Args: []ir.Operand{{Value: ir.Local(0)}}, Result: 4, Location: loc},
		"unknown":      &ir.CallStmt{Func: "g0.data.t.nope", Result: 4, Location: loc},
		"constant":     &ir.MakeNumberRefStmt{Index: 9, Target: 4, Location: loc},
		"not a number": &ir.MakeNumberRefStmt{Index: 0, Target: 4, Location: loc},
		"operand":      &ir.AssignVarStmt{Source: ir.Operand{Value: ir.StringIndex(-1)}, Target: 4, Location: loc},
		"local":        &ir.AssignVarStmt{Source: ir.Operand{Value: ir.Local(-3)}, Target: 4, Location: loc},
	} {
		pol := &ir.Policy{
			Static: &ir.Static{Files: []*ir.StringConst{{Value: "policies/t.rego"}}, Strings: []*ir.StringConst{{Value: "x"}}},
			Plans:  &ir.Plans{Plans: []*ir.Plan{{Name: "eval", Blocks: []*ir.Block{{Stmts: []ir.Stmt{stmt}}}}}},
			Funcs:  &ir.Funcs{Funcs: []*ir.Func{fn}},
		}
		_, err := vm.Compile(pol)
		if !errors.Is(err, vm.ErrUnsupported) || strings.Contains(err.Error(), "g0") {
			t.Errorf("%s: %v", name, err)
		}
		if name != "local" && !strings.HasPrefix(err.Error(), "policies/t.rego:7: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
