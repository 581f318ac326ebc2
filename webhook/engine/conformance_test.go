package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/test/cases"
	"github.com/open-policy-agent/opa/v1/test/cases/testdata"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// conformanceSkips are the cases of OPA's corpus not run, each with its
// reason.
var conformanceSkips = map[string]string{}

// registerSleep adds test.sleep, a built-in some of the corpus's cases call
// (OPA's own runners of the corpus register it the same way).
var registerSleep = sync.OnceFunc(func() {
	rego.RegisterBuiltin1(&rego.Function{
		Name: "test.sleep",
		Decl: types.NewFunction(types.Args(types.S), types.NewNull()),
	}, func(_ rego.BuiltinContext, op *ast.Term) (*ast.Term, error) {
		d, _ := time.ParseDuration(string(op.Value.(ast.String)))
		time.Sleep(d)
		return ast.NullTerm(), nil
	})
})

func loadConformanceCases(t *testing.T) []cases.TestCase {
	var all []cases.TestCase
	err := fs.WalkDir(testdata.V1, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
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
	return cases.Set{Cases: all}.Sorted().Cases
}

// TestConformance runs OPA's conformance corpus (the cases OPA's own
// evaluators are held to) through the engine's query preparation: the IR
// evaluator, and topdown for the plans it cannot run. Every restricted
// built-in is allowed, as a configuration may.
func TestConformance(t *testing.T) {
	registerSleep()
	all := loadConformanceCases(t)
	if len(all) < 2000 {
		t.Fatalf("loaded %d cases of OPA's corpus, want over 2,000", len(all))
	}
	var onIR, onTopdown, skipped, failed int
	fallbacks := map[string]int{}
	for _, tc := range all {
		name := strings.TrimSuffix(tc.Filename, ".yaml") + "/" + tc.Note
		ok := t.Run(name, func(t *testing.T) {
			if why, skip := conformanceSkips[tc.Note]; skip {
				skipped++
				t.Skip(why)
			}
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			q := runConformanceCase(t, tc)
			if q == nil {
				return
			}
			if q.program != nil {
				onIR++
			} else {
				onTopdown++
				fallbacks[firstLine(q.fallback)]++
			}
		})
		if !ok {
			failed++
		}
	}
	t.Logf("OPA conformance corpus: %d cases: %d passed on the IR evaluator, %d passed on topdown (plans the IR evaluator cannot run), %d skipped, %d failed",
		len(all), onIR, onTopdown, skipped, failed)
	reasons := slices.Collect(func(yield func(string) bool) {
		for r := range fallbacks {
			if !yield(r) {
				return
			}
		}
	})
	sort.Strings(reasons)
	for _, r := range reasons {
		t.Logf("  topdown for %d: %s", fallbacks[r], r)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// allBuiltins allows every restricted built-in (and every host).
func allBuiltins() config.Policies {
	var p config.Policies
	for name := range config.RestrictedBuiltins {
		p.AllowedBuiltins = append(p.AllowedBuiltins, name)
	}
	return p
}

// runConformanceCase runs one case as topdown's runner of the corpus does,
// and returns the query it prepared (nil when the case ended before).
func runConformanceCase(t *testing.T, tc cases.TestCase) *query {
	t.Helper()
	for k, v := range tc.Env {
		t.Setenv(k, v)
	}
	caps := Capabilities(allBuiltins())
	caps.AllowNet = nil
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1}
	if tc.ExperimentalKeywords {
		ek := ast.CapabilitiesForThisVersion(ast.CapabilitiesExperimentalKeywords(true))
		caps.Features = ek.Features
		caps.FutureKeywords = ek.FutureKeywords
		popts.Capabilities = caps
	}
	modules := map[string]*ast.Module{}
	for i, src := range tc.Modules {
		name := fmt.Sprintf("test-%d.rego", i)
		m, err := ast.ParseModuleWithOpts(name, src, popts)
		if err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
		modules[name] = m
	}
	compiler, err := compile(modules, caps)
	if err != nil {
		t.Fatal(err)
	}
	var store storage.Store
	var data vm.Value = vm.NewObject()
	if tc.Data != nil {
		store = inmem.NewFromObject(*tc.Data)
		v, err := ast.InterfaceToValue(*tc.Data)
		if err != nil {
			t.Fatal(err)
		}
		data = vm.Share(vm.FromAST(v))
	} else {
		store = inmem.New()
	}
	var in ast.Value
	switch {
	case tc.InputTerm != nil:
		in = ast.MustParseTerm(*tc.InputTerm).Value
	case tc.Input != nil:
		in = ast.MustInterfaceToValue(*tc.Input)
	}
	q, err := prepareQuery(t.Context(), tc.Query, queryOptions{
		compiler: compiler, store: store, capabilities: caps, strict: tc.StrictError,
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := q.eval(t.Context(), newASTInput(in), data)
	where := "the IR evaluator"
	if q.program == nil {
		where = "topdown (" + firstLine(q.fallback) + ")"
	}
	if tc.WantError != nil {
		if err == nil {
			t.Fatalf("%s: want error %q, got none (results %v)", where, *tc.WantError, bindings(t, rs, tc))
		}
		if !strings.Contains(err.Error(), *tc.WantError) {
			t.Fatalf("%s: want error %q, got %q", where, *tc.WantError, err)
		}
	}
	if tc.WantErrorCode != nil {
		var te *topdown.Error
		if !errors.As(err, &te) {
			t.Fatalf("%s: want error code %s, got %v (results %v)", where, *tc.WantErrorCode, err, bindings(t, rs, tc))
		}
		if te.Code != *tc.WantErrorCode {
			t.Fatalf("%s: want error code %s, got %s: %v", where, *tc.WantErrorCode, te.Code, err)
		}
	}
	if err != nil && tc.WantErrorCode == nil && tc.WantError == nil {
		t.Fatalf("%s: unexpected error: %v", where, err)
	}
	if tc.WantResult != nil {
		exp := ast.NewSet()
		for _, b := range *tc.WantResult {
			obj := ast.NewObject()
			for k, v := range b {
				obj.Insert(ast.StringTerm(k), ast.NewTerm(ast.MustInterfaceToValue(v)))
			}
			exp.Add(ast.NewTerm(obj))
		}
		if got := bindings(t, rs, tc); exp.Compare(got) != 0 {
			t.Fatalf("%s: unexpected query result:\nexp: %v\ngot: %v", where, exp, got)
		}
	}
	if tc.WantResult == nil && tc.WantErrorCode == nil && tc.WantError == nil {
		t.Fatal("the case wants no result nor error")
	}
	return q
}

// bindings turns results into the form the corpus gives them: JSON values
// (sets become arrays), without the planner's capture variables.
func bindings(t *testing.T, rs []*vm.Object, tc cases.TestCase) ast.Set {
	t.Helper()
	got := ast.NewSet()
	for _, r := range rs {
		obj := ast.NewObject()
		r0 := vm.ToAST(r).(ast.Object)
		for _, k := range r0.Keys() {
			name := string(k.Value.(ast.String))
			if name == exprKey || strings.HasPrefix(name, captureVarPrefix) {
				continue
			}
			if tc.IgnoreGeneratedVars && strings.HasPrefix(name, "__localq") {
				continue
			}
			v, err := ast.JSON(r0.Get(k).Value)
			if err != nil {
				t.Fatal(err)
			}
			if tc.SortBindings {
				if arr, ok := v.([]any); ok {
					slices.SortFunc(arr, util.Compare)
				}
			}
			obj.Insert(ast.StringTerm(name), ast.NewTerm(ast.MustInterfaceToValue(v)))
		}
		got.Add(ast.NewTerm(obj))
	}
	return got
}

// captureVarPrefix starts the variables rego adds to a query planned for a
// target, to capture the value of an expression that is not an assignment.
const captureVarPrefix = "^"
