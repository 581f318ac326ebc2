package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// TestFallbackToTopdown: a query OPA's planner cannot plan (a call of a
// built-in declared in the capabilities only) is prepared for topdown, not
// refused, with a reason that names the built-in and where the policy calls
// it, and gives topdown's answer: here topdown's error, as it has no
// implementation either. The engine's own capabilities declare no such
// built-in; this is the path any plan the IR cannot run takes.
func TestFallbackToTopdown(t *testing.T) {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, &ast.Builtin{
		Name: "egressguardtest.double", Decl: types.NewFunction(types.Args(types.N), types.N),
	})
	src := "package p\n\nx := egressguardtest.double(input.n)\n\ny := input.n + 1\n"
	m, err := ast.ParseModuleWithOpts("custom.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
	if err != nil {
		t.Fatal(err)
	}
	c, err := compile(map[string]*ast.Module{"custom.rego": m}, caps)
	if err != nil {
		t.Fatal(err)
	}
	opts := queryOptions{compiler: c, capabilities: caps}
	q, err := prepareQuery(t.Context(), "data.p.x", opts)
	if err != nil {
		t.Fatalf("a plan the IR cannot run must fall back, not fail: %v", err)
	}
	if q.onIR() {
		t.Fatal("the IR evaluator claims a built-in it has no implementation of")
	}
	reason := q.fallbackReason()
	for _, want := range []string{"egressguardtest.double", "custom.rego:3"} {
		if !strings.Contains(reason, want) {
			t.Errorf("fallback reason %q does not name %q", reason, want)
		}
	}
	if planName.MatchString(reason) {
		t.Errorf("fallback reason names the plan's internals: %s", reason)
	}
	_, err = q.value(t.Context(), newASTInput(ast.MustParseTerm(`{"n": 21}`).Value), nil)
	var te *topdown.Error
	if !errors.As(err, &te) || te.Code != topdown.InternalErr || !strings.Contains(err.Error(), "custom.rego:3") {
		t.Fatalf("want topdown's error for the unimplemented built-in, got %v", err)
	}
	// The rest of the policies still run on the IR.
	q, err = prepareQuery(t.Context(), "data.p.y", opts)
	if err != nil || !q.onIR() {
		t.Fatalf("data.p.y should run on the IR evaluator: %v %s", err, q.fallbackReason())
	}
	v, err := q.value(t.Context(), newASTInput(ast.MustParseTerm(`{"n": 21}`).Value), nil)
	if err != nil || v == nil || ast.Compare(ast.Number("22"), vm.ToAST(v)) != 0 {
		t.Fatalf("data.p.y = %v (%v), want 22", v, err)
	}
}
