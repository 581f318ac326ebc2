package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/test/cases"
	"github.com/open-policy-agent/opa/v1/test/cases/testdata"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// registerTestSleep declares test.sleep, the built-in OPA's own runner
// registers for the corpus's cancellation cases.
var registerTestSleep = sync.OnceFunc(func() {
	ast.RegisterBuiltin(&ast.Builtin{Name: "test.sleep", Decl: types.NewFunction(types.Args(types.S), types.Nl)})
	topdown.RegisterBuiltinFunc("test.sleep", func(_ topdown.BuiltinContext, ops []*ast.Term, iter func(*ast.Term) error) error {
		d, err := time.ParseDuration(string(ops[0].Value.(ast.String)))
		if err != nil {
			return err
		}
		time.Sleep(d)
		return iter(ast.NullTerm())
	})
})

// TestConformance runs OPA's conformance corpus (the cases OPA's topdown
// and its IR evaluators are held to) through the engine's query path:
// the policies compiled as the engine compiles them, each query prepared
// for the IR evaluator and falling back to topdown where it cannot run
// it. Every case must give its expected result or error.
func TestConformance(t *testing.T) {
	registerTestSleep()
	all := loadConformanceCases(t)
	// Every restricted built-in allowed, and the hosts the corpus's
	// net.lookup_ip_addr cases resolve: the corpus tests the built-ins
	// themselves; what the configuration allows is tested beside
	// Capabilities.
	policies := config.Policies{
		AllowedBuiltins: slices.Collect(maps.Keys(config.RestrictedBuiltins)),
		AllowedHosts:    []string{"localhost", "10.0.0.0", "::"},
	}
	var onIR, onTopdown int
	reasons := map[string]int{}
	for _, tc := range all {
		name := strings.TrimSuffix(tc.Filename, ".yaml") + "/" + tc.Note
		t.Run(name, func(t *testing.T) {
			q, err := conformanceQuery(t, tc, policies)
			if err != nil {
				t.Fatal(err)
			}
			if r := q.fallbackReason(); r != "" {
				onTopdown++
				reasons[firstLine(r)]++
			} else {
				onIR++
			}
			checkConformance(t, tc, q)
		})
	}
	// Every case runs: none is skipped.
	t.Logf("OPA conformance corpus: %d cases; %d on the IR evaluator, %d on topdown after a fallback",
		len(all), onIR, onTopdown)
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		t.Logf("  fallback (%d): %s", reasons[r], r)
	}
	if len(all) < 2000 {
		t.Fatalf("the corpus has %d cases: not the one OPA embeds", len(all))
	}
}

func loadConformanceCases(t *testing.T) []cases.TestCase {
	var all []cases.TestCase
	err := fs.WalkDir(testdata.V1, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		bs, err := fs.ReadFile(testdata.V1, path)
		if err != nil {
			return err
		}
		var set cases.Set
		if err := util.Unmarshal(bs, &set); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i := range set.Cases {
			set.Cases[i].Filename = path
		}
		all = append(all, set.Cases...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Note < all[j].Note })
	return all
}

// conformanceQuery compiles a case's modules and prepares its query as the
// engine does.
func conformanceQuery(t *testing.T, tc cases.TestCase, policies config.Policies) (*query, error) {
	for k, v := range tc.Env {
		t.Setenv(k, v)
	}
	caps := Capabilities(policies)
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1}
	if tc.ExperimentalKeywords {
		ek := ast.CapabilitiesForThisVersion(ast.CapabilitiesExperimentalKeywords(true))
		caps.Features, caps.FutureKeywords = ek.Features, ek.FutureKeywords
		popts.Capabilities = caps
	}
	modules := map[string]*ast.Module{}
	for i, src := range tc.Modules {
		name := fmt.Sprintf("test-%d.rego", i)
		m, err := ast.ParseModuleWithOpts(name, src, popts)
		if err != nil {
			return nil, err
		}
		modules[name] = m
	}
	compiler, err := compile(modules, caps)
	if err != nil {
		return nil, err
	}
	return prepareQuery(t.Context(), tc.Query, queryOptions{
		compiler: compiler, capabilities: caps, strict: tc.StrictError,
	})
}

// checkConformance evaluates q as the case says and compares, as OPA's own
// runner does (v1/topdown/exported_test.go).
func checkConformance(t *testing.T, tc cases.TestCase, q *query) {
	var data ast.Value = ast.NewObject()
	if tc.Data != nil {
		data = ast.MustInterfaceToValue(*tc.Data)
	}
	var input *astInput
	switch {
	case tc.InputTerm != nil:
		input = newASTInput(ast.MustParseTerm(*tc.InputTerm).Value)
	case tc.Input != nil:
		input = newASTInput(ast.MustInterfaceToValue(*tc.Input))
	default:
		input = newASTInput(nil)
	}
	rs, err := q.eval(t.Context(), input, docFromValue(vm.Share(vm.FromAST(data))))
	if err != nil && planName.MatchString(err.Error()) {
		t.Errorf("the error names the plan's internals: %v", err)
	}
	if tc.WantError != nil && (err == nil || !strings.Contains(err.Error(), *tc.WantError)) {
		t.Fatalf("want an error containing %q, got %v", *tc.WantError, err)
	}
	if tc.WantErrorCode != nil {
		var te *topdown.Error
		if !errors.As(err, &te) || te.Code != *tc.WantErrorCode {
			t.Fatalf("want an error of code %s, got %v", *tc.WantErrorCode, err)
		}
	}
	if err != nil && tc.WantError == nil && tc.WantErrorCode == nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if tc.WantResult == nil && tc.WantError == nil && tc.WantErrorCode == nil {
		t.Fatal("the case wants neither a result nor an error")
	}
	if err != nil || tc.WantResult == nil {
		// A case may want both an error and the results found before
		// it (strict built-in errors): the engine, as rego.Eval, gives
		// no results with an error.
		return
	}
	exp := ast.NewSet()
	for _, b := range *tc.WantResult {
		obj := ast.NewObject()
		for k, v := range b {
			obj.Insert(ast.StringTerm(k), ast.NewTerm(ast.MustInterfaceToValue(v)))
		}
		exp.Add(ast.NewTerm(obj))
	}
	got := ast.NewSet()
	for _, r := range rs {
		obj := ast.NewObject()
		bindings := vm.ToAST(r).(ast.Object)
		for _, k := range bindings.Keys() {
			name := string(k.Value.(ast.String))
			// The plan's own variables (^...) and the value of a query
			// without variables are not bindings of the query's.
			if strings.HasPrefix(name, "^") || name == exprKey ||
				(tc.IgnoreGeneratedVars && strings.HasPrefix(name, "__localq")) {
				continue
			}
			v, err := ast.JSON(bindings.Get(k).Value)
			if err != nil {
				t.Fatal(err)
			}
			if arr, ok := v.([]any); ok && tc.SortBindings {
				slices.SortFunc(arr, util.Compare)
			}
			obj.Insert(ast.StringTerm(name), ast.NewTerm(ast.MustInterfaceToValue(v)))
		}
		got.Add(ast.NewTerm(obj))
	}
	if exp.Compare(got) != 0 {
		t.Fatalf("unexpected result\nwant: %v\ngot:  %v", exp, got)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "; ")
	return line
}
