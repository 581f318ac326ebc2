package engine

import (
	"context"
	"testing"
	"syscall"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestProbeQueries(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	mods, _ := loadModules(nil)
	mods = append(mods, dispatchModules(mods)...)
	c := ast.NewCompiler()
	pm := map[string]*ast.Module{}
	for _, m := range mods {
		pm[m.name] = m.module
	}
	c.Compile(pm)
	store, _ := newStore(cfg, Inventory{})
	in, _ := Input(request("VirtualService", directVS))
	for _, q := range []string{"input.kind", "data.egressguard.main.violations", "data.egressguard.dispatch.virtualservice.violations", "data.egressguard.dispatch.virtualservice.intents"} {
		pq, err := rego.New(rego.Query(q), rego.Compiler(c), rego.Store(store)).PrepareForEval(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 2000
		start := cpu()
		for range n {
			if _, err := pq.Eval(ctx, rego.EvalParsedInput(in.Value)); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%-70s %8.1f us", q, float64((cpu()-start).Microseconds())/float64(n))
	}
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
