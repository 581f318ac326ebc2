package vm_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/valyala/fastjson"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

func mustCompile(t *testing.T, print bool, rules string) *ast.Compiler {
	t.Helper()
	c, err := compileRego(map[string]string{"t.rego": "package t\n\n" + rules + "\n"}, print)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustProgram(t *testing.T, c *ast.Compiler, query string) *vm.Program {
	t.Helper()
	p, err := programFor(t.Context(), c, query)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuiltinContext: built-ins that need randomness, a clock or a cache
// get them, as in topdown: with the same seed and time, the same values.
func TestBuiltinContext(t *testing.T) {
	c := mustCompile(t, false, `p := [rand.intn("a", 1000000), rand.intn("a", 1000000), rand.intn("b", 1000000), uuid.rfc4122("x"), uuid.rfc4122("x"), time.now_ns(), time.now_ns()]`)
	p := mustProgram(t, c, "data.t.p")
	seed := []byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789")
	at := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	td := viaTopdownWith(t.Context(), c, "data.t.p", nil, nil, []rego.EvalOption{rego.EvalSeed(bytes.NewReader(seed)), rego.EvalTime(at)})
	got := viaVM(t.Context(), p, nil, nil, vm.EvalOptions{Seed: bytes.NewReader(seed), Time: at})
	if got.err != nil || got.String() != td.String() {
		t.Fatalf("vm: %v\ntopdown: %v", got, td)
	}

	// By default: crypto/rand and the evaluation's start, one time for
	// every call.
	got = viaVM(t.Context(), p, nil, nil, vm.EvalOptions{})
	if got.err != nil {
		t.Fatal(got.err)
	}
	v := ast.MustParseTerm(got.value).Value.(*ast.Array)
	if !v.Elem(5).Equal(v.Elem(6)) || !v.Elem(3).Equal(v.Elem(4)) || v.Elem(0).Equal(v.Elem(2)) {
		t.Fatalf("values: %v", v)
	}
}

// roundTripper answers every request itself.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHTTPSend: http.send gets the metrics, caches and transport it needs.
func TestHTTPSend(t *testing.T) {
	c := mustCompile(t, false, `p := http.send({"method": "GET", "url": "http://policy.test/x"}).body`)
	p := mustProgram(t, c, "data.t.p")
	reply := roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"path": "` + r.URL.Path + `"}`)), Request: r,
		}, nil
	})
	got := viaVM(t.Context(), p, nil, nil, vm.EvalOptions{
		StrictBuiltinErrors: true,
		HTTPRoundTripper:    func(*http.Transport) http.RoundTripper { return reply },
	})
	if got.String() != `{"path": "/x"}` {
		t.Fatalf("http.send: %v", got)
	}
}

// TestPanicsAreErrors: a built-in that panics ends the evaluation with an
// error naming it and the call's place; the process goes on.
func TestPanicsAreErrors(t *testing.T) {
	c := mustCompile(t, false, `p := http.send({"method": "GET", "url": "http://policy.test/x"})`)
	p := mustProgram(t, c, "data.t.p")
	boom := roundTripper(func(*http.Request) (*http.Response, error) { panic("boom") })
	got := viaVM(t.Context(), p, nil, nil, vm.EvalOptions{
		HTTPRoundTripper: func(*http.Transport) http.RoundTripper { return boom },
	})
	var pe *vm.PanicError
	if !errors.As(got.err, &pe) || pe.Builtin != "http.send" ||
		!strings.HasPrefix(got.err.Error(), "evaluation panicked in built-in http.send at t.rego:3: boom") {
		t.Fatalf("got %v", got)
	}
	// The program is still usable.
	got = viaVM(t.Context(), p, nil, nil, vm.EvalOptions{
		HTTPRoundTripper: func(*http.Transport) http.RoundTripper {
			return roundTripper(func(*http.Request) (*http.Response, error) { return nil, errors.New("unreachable") })
		},
	})
	if got.err != nil {
		t.Fatalf("after a panic: %v", got)
	}
}

// lines is a print hook that keeps what it is given.
type lines struct{ got []string }

func (l *lines) Print(_ print.Context, s string) error {
	l.got = append(l.got, s)
	return nil
}

// TestPrint: print writes what topdown's writes, and the body goes on.
func TestPrint(t *testing.T) {
	c := mustCompile(t, true, `p if {
	print("a:", input.a, "missing:", input.nope)
	some x in input.xs
	print(x)
	x > 1
}`)
	p := mustProgram(t, c, "data.t.p")
	input := ast.MustParseTerm(`{"a": {"k": [1, "s"]}, "xs": [1, 2]}`).Value
	var tdOut, vmOut lines
	td := viaTopdown(t.Context(), c, "data.t.p", input, nil, rego.PrintHook(&tdOut))
	got := viaVM(t.Context(), p, input, nil, vm.EvalOptions{PrintHook: &vmOut})
	if got.String() != td.String() || strings.Join(vmOut.got, "\n") != strings.Join(tdOut.got, "\n") {
		t.Fatalf("vm: %v %q\ntopdown: %v %q", got, vmOut.got, td, tdOut.got)
	}
	// Without a hook, print does nothing and the body goes on.
	if got := viaVM(t.Context(), p, input, nil, vm.EvalOptions{}); got.String() != "true" {
		t.Fatalf("without a hook: %v", got)
	}
}

// TestNDBuiltinCache: non-deterministic built-ins record their results, and
// a recorded result is used again.
func TestNDBuiltinCache(t *testing.T) {
	c := mustCompile(t, false, `p := rand.intn("x", 1000000000)`)
	p := mustProgram(t, c, "data.t.p")
	cache := builtins.NDBCache{}
	first := viaVM(t.Context(), p, nil, nil, vm.EvalOptions{NDBuiltinCache: cache})
	if _, ok := cache.Get("rand.intn", ast.NewArray(ast.StringTerm("x"), ast.InternedTerm(1000000000))); !ok {
		t.Fatalf("not recorded: %v", cache)
	}
	again := viaVM(t.Context(), p, nil, nil, vm.EvalOptions{NDBuiltinCache: cache})
	if first.err != nil || first.String() != again.String() {
		t.Fatalf("first %v, again %v", first, again)
	}
}

// TestDeadline: a built-in working on a large request stops at the
// deadline with topdown's cancellation error, as the evaluator's own loops
// do.
func TestDeadline(t *testing.T) {
	for _, tc := range []struct{ name, rules string }{
		{"built-in", `p := count(numbers.range(1, input.n))`},
		{"loop", `p := count([x | some x in numbers.range(1, 100000); some y in numbers.range(1, input.n); x == y])`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCompile(t, false, tc.rules)
			p := mustProgram(t, c, "data.t.p")
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			got := viaVM(ctx, p, ast.MustParseTerm(`{"n": 100000000}`).Value, nil, vm.EvalOptions{})
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("took %v", elapsed)
			}
			if got.code() != topdown.CancelErr {
				t.Fatalf("got %v", got)
			}
		})
	}
	// An evaluation whose context has ended does not start.
	c := mustCompile(t, false, `p := 1`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	got := viaVM(ctx, mustProgram(t, c, "data.t.p"), nil, nil, vm.EvalOptions{})
	if got.code() != topdown.CancelErr || !errors.Is(got.err, context.Canceled) {
		t.Fatalf("got %v", got)
	}
}

// TestStrictBuiltinErrors: in strict mode a failing built-in is the
// evaluation's error, as topdown gives it (code, message, place); the
// first one wins.
func TestStrictBuiltinErrors(t *testing.T) {
	for _, rules := range []string{
		`p := to_number("x")`,
		`p := count(input.n)`,
		"p := [x | some x in input.xs; to_number(x)]",
		"p := 1 if { to_number(\"x\") }\np := 2 if { 1 / 0 }",
		`p := sum(input.xs)`,
		`p := object.get(input.n, "a", 2)`,
		// every ends at its first counterexample
		"p if every x in input.ys { x > 1; to_number(x) }",
		"f(x) := 1 if x\nf(x) := 2 if x\np if every x in input.ys { x != 0; f(x) }",
	} {
		t.Run(rules, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				agreement{
					modules: map[string]string{"t.rego": "package t\n\n" + rules + "\n"},
					query:   "data.t.p", input: `{"n": 1, "xs": ["1", "a", "b"], "ys": [0, "z"]}`, strict: strict,
				}.agree(t)
			}
		})
	}
}

// TestSharedValuesAreOnlyRead: evaluations running at once on the same
// data document and input only read them (run with -race), and iterate
// them in OPA's order.
func TestSharedValuesAreOnlyRead(t *testing.T) {
	c := mustCompile(t, false, `p := {
	"input": concat(",", [sprintf("%s=%v", [k, v]) | some k, v in input.labels]),
	"data": [x | some x in data.hosts],
	"nested": [k | some k, _ in data.byName.z],
	"derived": [k | some k, _ in {v: 1 | some v in data.hosts}],
}`)
	p := mustProgram(t, c, "data.t.p")
	doc, err := fastjson.Parse(`{"labels": {"zone": "b", "app": "x", "tier": 1}}`)
	if err != nil {
		t.Fatal(err)
	}
	input := vm.FromJSON(doc, nil)
	hosts := vm.FromAST(ast.MustParseTerm(`{"c.example", "a.example", "b.example"}`).Value)
	data := vm.Share(vm.NewObject("hosts", hosts, "byName", vm.NewObject("z", vm.NewObject("q", ast.Number("1"), "b", ast.Number("2")))))
	want := `{"data": ["a.example", "b.example", "c.example"], "derived": ["a.example", "b.example", "c.example"], "input": "app=x,tier=1,zone=b", "nested": ["b", "q"]}`
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				rs, err := p.Eval(t.Context(), p.Plans()[0], input, data)
				if err != nil {
					t.Error(err)
					return
				}
				if got := ast.NewTerm(vm.ToAST(rs.Elems()[0].(*vm.Object).Values()[0])).String(); got != want {
					t.Errorf("got %s", got)
					return
				}
			}
		})
	}
	wg.Wait()
}
