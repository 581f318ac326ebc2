package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// A policy calling a restricted built-in does not load: the error names the
// file, the line and the built-in, and the last good engine stays in force
// until the configuration allows the built-in.
func TestHolderRefusesRestrictedBuiltins(t *testing.T) {
	w := watch(t)
	first := w.Get()
	policy := "package egressguard.rules.custom\n\ndeny contains {\"code\": \"EGR901\", \"message\": r.body} if {\n\tr := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"})\n}\n"
	w.policies.update(map[string]string{"custom.rego": policy})
	eventually(t, "a failed reload", func() bool { _, f := w.reloads(t); return f >= 1 })
	if w.Get() != first {
		t.Fatal("a policy calling http.send replaced the engine")
	}
	err := w.Load(context.Background())
	if err == nil {
		t.Fatal("a policy calling http.send loaded")
	}
	for _, want := range []string{"custom.rego:4", "http.send"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %q: %v", want, err)
		}
	}
	if w.Get() != first {
		t.Fatal("a failed load replaced the engine")
	}

	allowing := fmt.Sprintf(goodConfig, "deny") + "policies:\n  allowedBuiltins: [http.send]\n  allowedHosts: [127.0.0.1]\n"
	w.config.update(map[string]string{"config.yaml": allowing})
	eventually(t, "the reload with http.send allowed", func() bool { return w.Get() != first })
	if got := w.Get().Config().Policies.AllowedBuiltins; len(got) != 1 || got[0] != "http.send" {
		t.Fatalf("allowed built-ins in force: %v", got)
	}
}

// serviceEntries is n MESH_EXTERNAL ServiceEntries, half of them wildcards.
func serviceEntries(n int) engine.Inventory {
	inv := engine.Inventory{ServiceEntries: make([]engine.ServiceEntryRef, 0, n)}
	for i := range n {
		host := fmt.Sprintf("db%d.legacy.example.com", i)
		if i%2 == 1 {
			host = fmt.Sprintf("*.lan%d.office.example", i)
		}
		inv.ServiceEntries = append(inv.ServiceEntries, engine.ServiceEntryRef{
			Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("se-%d", i), Hosts: []string{host}, Location: "MESH_EXTERNAL",
		})
	}
	return inv
}

// An inventory update swaps the data of the engine in force and compiles
// nothing; a file reload compiles once and keeps the inventory; /readyz's
// inventory check passes from the first update on.
func TestRefreshSwapsDataWithoutCompiling(t *testing.T) {
	w := watch(t)
	ready := w.InventoryChecker()
	if err := ready(nil); err == nil {
		t.Fatal("the inventory is ready before its first sync")
	}
	compiles := w.Compiles()
	first := w.Get()
	for i := range 5 {
		if err := w.Refresh(context.Background(), serviceEntries(100*(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.Compiles(); got != compiles {
		t.Errorf("inventory updates compiled %d times", got-compiles)
	}
	if w.Get() == first || !w.Get().SamePolicies(first) || w.Get().ServiceEntries() != 500 {
		t.Errorf("the engine in force does not hold the last inventory with the same policies")
	}
	if err := ready(nil); err != nil {
		t.Errorf("inventory not ready after an update: %v", err)
	}
	w.policies.update(map[string]string{"custom.rego": policyOne + "\n# changed\n"})
	eventually(t, "the reload of a changed policy", func() bool { return !w.Get().SamePolicies(first) })
	if got := w.Compiles(); got != compiles+1 {
		t.Errorf("a policy change compiled %d times, want once", got-compiles)
	}
	if got := compilesMetric(t, w.reg); got != float64(w.Compiles()) {
		t.Errorf("egress_guard_policy_compiles_total is %v, the holder compiled %d times", got, w.Compiles())
	}
	if got := w.Get().ServiceEntries(); got != 500 {
		t.Errorf("the reload lost the inventory: %d ServiceEntries", got)
	}
}

// Updates and reloads race; run with -race. The last update is in force.
func TestRefreshConcurrentWithReload(t *testing.T) {
	w := watch(t)
	done := make(chan error)
	for g := range 4 {
		go func() {
			for i := range 20 {
				if err := w.Refresh(context.Background(), serviceEntries(g*20+i)); err != nil {
					done <- err
					return
				}
				if _, err := w.Get().Violations(context.Background(), mustInput(t)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := range 3 {
		w.policies.update(map[string]string{"custom.rego": fmt.Sprintf("%s\n# %d\n", policyOne, i)})
		if err := w.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Refresh(context.Background(), serviceEntries(7)); err != nil {
		t.Fatal(err)
	}
	if got := w.Get().ServiceEntries(); got != 7 {
		t.Errorf("%d ServiceEntries in force, want the last update's 7", got)
	}
}

func mustInput(t *testing.T) *engine.Prepared {
	in, err := engine.Input(engine.Request{Operation: "CREATE", Kind: "VirtualService", Namespace: "default", Name: "v",
		Object: []byte(`{"spec":{"hosts":["db3.legacy.example.com"],"http":[{"route":[{"destination":{"host":"db3.legacy.example.com"}}]}]}}`)})
	if err != nil {
		t.Error(err)
	}
	return in
}

// BenchmarkRefresh: an inventory update with 10,000 ServiceEntries, as
// serve applies one (Holder.Refresh). It reports the p99 of the updates and
// the compiles they made.
func BenchmarkRefresh(b *testing.B) {
	h := &Holder{log: logr.Discard(), metrics: metrics.New(prometheus.NewRegistry())}
	if err := h.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	inv := serviceEntries(10000)
	if err := h.Refresh(context.Background(), inv); err != nil {
		b.Fatal(err)
	}
	compiles := h.Compiles()
	var took []time.Duration
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		inv.ServiceEntries[i%len(inv.ServiceEntries)].Hosts = []string{fmt.Sprintf("changed%d.example.com", i)}
		start := time.Now()
		if err := h.Refresh(context.Background(), inv); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(h.Compiles()-compiles), "compiles")
}

// compilesMetric reads egress_guard_policy_compiles_total.
func compilesMetric(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "egress_guard_policy_compiles_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no egress_guard_policy_compiles_total")
	return 0
}
