// Command bench measures what egress-guard costs an API server, against a
// baseline: a no-op controller-runtime webhook (./noop) that admits
// everything.
//
// Both servers run as separate processes on 127.0.0.1 with the same
// self-signed serving certificate, and get the same request mix: full
// AdmissionReview (admission.k8s.io/v1) requests for Istio ServiceEntries,
// VirtualServices and DestinationRules, about 40% allowed, 30% denied and
// 30% patched by egress-guard, posted over TLS (HTTP/2 when offered) to
// /validate and /mutate. A sample of egress-guard's answers is checked
// against the expected decision; a mismatch is reported, not fatal.
//
// It measures:
//
//  1. closed-loop saturation: -concurrency workers, each on its own
//     keep-alive connection, send back to back for -duration after
//     -warmup: throughput, p50/p99/p99.9 latency, and server CPU per
//     request (utime+stime from /proc/<pid>/stat over the requests served);
//  2. open loop at -rate requests/s for -duration: every request is sent at
//     its intended time and its latency counts from that time, so a server
//     stall is charged to every request queued behind it (no coordinated
//     omission): p50/p99/p99.9 of the answered requests, errors (timeouts
//     included) counted apart, server CPU per request;
//  3. in-process policy evaluation with the engine package (input building
//     plus the violations and intents queries), -eval-n evaluations timed
//     one by one: p50/p99;
//  4. memory: -rss-requests requests to each server, in ten steps; VmRSS
//     from /proc/<pid>/status is sampled at every 10%, and the growth from
//     the 20% mark to the end tells whether memory is flat.
//
// It then prints the targets with PASS or FAIL: throughput at least 50% of
// the no-op's, open-loop p99 at most twice the no-op's, policy evaluation
// p50 at most 50µs, RSS growth under 20%. It exits non-zero only when the
// benchmark cannot run, not on a missed target.
//
// Usage (from the module root; `make bench` builds egress-guard first):
//
//	go run ./test/bench -egress-guard bin/egress-guard
//	go run ./test/bench -egress-guard bin/egress-guard -duration 3s -rss-requests 20000
//
// The client shares the machine with both servers: on a small machine the
// absolute figures say as much about the client as about the servers, and
// the ratios and CPU per request are the figures to compare.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

type options struct {
	egressGuard  string
	extraArgs    string
	noop         string
	concurrency  int
	warmup       time.Duration
	duration     time.Duration
	rounds       int
	rate         int
	rssRequests  int64
	rssTimeout   time.Duration
	evalN        int
	sampleEvery  int
	keep         bool
	evalProfile  string
	evalOnly     bool
	auditObjects int
	auditOnly    bool
	serverCPUs   string
}

// pinned is the command line that runs bin with args on the servers' CPUs.
// taskset execs bin, so the process is bin's (its /proc CPU times too).
func (o options) pinned(bin string, args ...string) []string {
	if o.serverCPUs == "" {
		return append([]string{bin}, args...)
	}
	return append([]string{"taskset", "-c", o.serverCPUs, bin}, args...)
}

// allowedCPUs is the CPU list this process may run on.
func allowedCPUs() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func main() {
	var o options
	flag.StringVar(&o.egressGuard, "egress-guard", "", "path to the egress-guard binary (required)")
	flag.StringVar(&o.extraArgs, "egress-guard-args", "", "extra arguments for `egress-guard serve`, space separated")
	flag.StringVar(&o.noop, "noop", "", "path to a prebuilt no-op server (default: build ./test/bench/noop)")
	flag.IntVar(&o.concurrency, "concurrency", 32, "closed-loop workers, one connection each")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "closed-loop warmup before measuring")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "duration of the closed-loop and open-loop runs")
	flag.IntVar(&o.rounds, "rounds", 5, "closed-loop rounds the duration is split into, alternating between the servers")
	flag.IntVar(&o.rate, "rate", 1000, "open-loop request rate, requests/s")
	flag.Int64Var(&o.rssRequests, "rss-requests", 1_000_000, "requests per server in the memory run (0 skips it)")
	flag.DurationVar(&o.rssTimeout, "rss-timeout", 30*time.Minute, "time limit of the memory run")
	flag.IntVar(&o.evalN, "eval-n", 20000, "in-process policy evaluations to time")
	flag.IntVar(&o.sampleEvery, "sample-every", 50, "check every n-th answer of each worker against the expectation")
	flag.StringVar(&o.evalProfile, "eval-cpuprofile", "", "write a CPU profile of the in-process policy evaluation to this file")
	flag.IntVar(&o.auditObjects, "audit-objects", 10000, "objects the audit benchmark generates and audits (0 skips it)")
	flag.BoolVar(&o.auditOnly, "audit-only", false, "run the evaluation and audit benchmarks only")
	flag.BoolVar(&o.evalOnly, "eval-only", false, "time the in-process policy evaluation only")
	flag.StringVar(&o.serverCPUs, "server-cpus", "", "CPU list the servers are pinned to with taskset (e.g. 1); run the bench itself pinned to others (taskset -c 0 bench ...); empty: not pinned")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (certificates, config, server logs)")
	flag.Parse()
	if o.egressGuard == "" || o.concurrency < 1 || o.rate < 1 || o.duration <= 0 || o.rounds < 1 || o.evalN < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.egressGuard)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("egress-guard binary: %w", err)
	}
	rs, err := mix()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "egress-guard-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("temporary directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	// 3. Policy evaluation first, while nothing else runs.
	ev, err := policyEval(ctx, rs, o.evalN, o.evalProfile)
	if err != nil {
		return err
	}
	if o.evalOnly {
		printEval(o.evalN, ev)
		return nil
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig), 0o600); err != nil {
		return err
	}

	// 4. The audit of generated files, also while nothing else runs.
	var aud *auditResult
	if o.auditObjects > 0 {
		if aud, err = auditBench(ctx, bin, dir, cfgPath, rs, o.auditObjects); err != nil {
			return err
		}
		if o.auditOnly {
			printEval(o.evalN, ev)
			printAudit(aud)
			return nil
		}
	}

	pool, err := writeCerts(dir)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	noopBin := o.noop
	if noopBin == "" {
		if noopBin, err = buildNoop(ctx, dir); err != nil {
			return err
		}
	}
	probe := &http.Client{Transport: newTransport(pool), Timeout: 5 * time.Second}

	var ports [4]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	noopSrv, err := start(ctx, "noop", dir, ports[0],
		[]string{fmt.Sprintf("https://127.0.0.1:%d/readyz", ports[0])}, probe,
		o.pinned(noopBin, "--cert-dir", dir, "--bind-address", "127.0.0.1", "--port", strconv.Itoa(ports[0])))
	if err != nil {
		return err
	}
	defer noopSrv.stop()
	args := []string{"serve", "--cert-dir", dir, "--bind-address", "127.0.0.1", "--port", strconv.Itoa(ports[1]),
		"--config", cfgPath,
		// A closed loop never has more requests waiting than it has
		// workers: the bench measures decisions, not overload answers
		// (HTTP 429 beyond the default bound of four per worker).
		"--max-queued-requests", strconv.Itoa(o.concurrency),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[3])}
	args = append(args, strings.Fields(o.extraArgs)...)
	egSrv, err := start(ctx, "egress-guard", dir, ports[1],
		[]string{fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[3]), fmt.Sprintf("https://127.0.0.1:%d/readyz", ports[1])}, probe,
		o.pinned(bin, args...))
	if err != nil {
		return err
	}
	defer egSrv.stop()

	newClients := func() []*http.Client {
		cs := make([]*http.Client, o.concurrency)
		for i := range cs {
			cs[i] = &http.Client{Transport: newTransport(pool), Timeout: 10 * time.Second}
		}
		return cs
	}
	noop := &target{server: noopSrv, clients: newClients(), expect: func(*review) outcome { return allowed }}
	eg := &target{server: egSrv, clients: newClients(), expect: func(r *review) outcome { return r.want }}
	tgs := []*target{noop, eg}

	// Every kind of request once, answers checked.
	for _, tg := range tgs {
		t := newTally()
		for _, r := range rs {
			tg.send(ctx, tg.clients[0], r, true, t)
		}
		if t.errors > 0 {
			return fmt.Errorf("%s: %d of %d requests failed: %s\n%s", tg.name, t.errors, len(rs), t.firstErr, tg.logTail())
		}
		warnWrong(tg.name, "first pass", t.checked, t.wrong)
	}

	fmt.Printf("egress-guard bench: %d CPUs (load average %s), %d workers, %s runs (+%s warmup), open loop %d req/s, memory run %d req/server\n",
		runtime.NumCPU(), loadAvg(), o.concurrency, o.duration, o.warmup, o.rate, o.rssRequests)
	fmt.Printf("  CPUs: the servers %s, the load generator %s\n", cmp.Or(o.serverCPUs, "any"), allowedCPUs())

	// 1. Closed loop, in rounds alternating between the servers so that a
	// change in the machine's background load hits both alike.
	closed := map[*target]*tally{}
	for _, tg := range tgs {
		if _, err := tg.closedLoop(ctx, rs, o.warmup, math.MaxInt64, false, 0); err != nil {
			return err
		}
		closed[tg] = newTally()
	}
	for range o.rounds {
		for _, tg := range tgs {
			t, err := tg.closedLoop(ctx, rs, o.duration/time.Duration(o.rounds), math.MaxInt64, true, o.sampleEvery)
			if err != nil {
				return err
			}
			closed[tg].merge(t)
		}
	}
	for _, tg := range tgs {
		closed[tg].finish()
	}
	// 2. Open loop.
	open := map[*target]*tally{}
	for _, tg := range tgs {
		t, err := tg.openLoop(ctx, rs, o.rate, o.duration, o.sampleEvery)
		if err != nil {
			return err
		}
		open[tg] = t
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	fmt.Printf("\n%-34s %12s %12s %8s\n", "", "no-op", "egress-guard", "ratio")
	row := func(label string, a, b float64, format string) {
		ratio := "-"
		if a > 0 {
			ratio = fmt.Sprintf("%.2f", b/a)
		}
		fmt.Printf("%-34s %12s %12s %8s\n", label, fmt.Sprintf(format, a), fmt.Sprintf(format, b), ratio)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, ph := range []struct {
		title string
		res   map[*target]*tally
	}{
		{fmt.Sprintf("closed loop, %d workers, %s", o.concurrency, o.duration), closed},
		{fmt.Sprintf("open loop, %d req/s, %s", o.rate, o.duration), open},
	} {
		a, b := ph.res[noop], ph.res[eg]
		fmt.Printf("%s (%s | %s)\n", ph.title, protos(a), protos(b))
		row("  throughput req/s", a.rate(), b.rate(), "%.0f")
		row("  latency p50 ms", ms(a.pct(0.50)), ms(b.pct(0.50)), "%.3f")
		row("  latency p99 ms", ms(a.pct(0.99)), ms(b.pct(0.99)), "%.3f")
		row("  latency p99.9 ms", ms(a.pct(0.999)), ms(b.pct(0.999)), "%.3f")
		row("  server CPU µs/req", a.cpuPerReq(), b.cpuPerReq(), "%.0f")
		row("  server CPU cores busy", a.serverCPU.Seconds()/a.elapsed.Seconds(), b.serverCPU.Seconds()/b.elapsed.Seconds(), "%.2f")
		row("  bench client CPU µs/req", perReq(a.selfCPU, a.requests), perReq(b.selfCPU, b.requests), "%.0f")
		fmt.Printf("  %-32s %12d %12d\n", "errors", a.errors, b.errors)
	}
	printEval(o.evalN, ev)

	for _, tg := range tgs {
		for _, t := range []*tally{closed[tg], open[tg]} {
			if t.errors > 0 {
				fmt.Printf("WARNING: %s: %d failed requests, first: %s\n", tg.name, t.errors, t.firstErr)
			}
		}
		if r := open[tg].rate(); r < 0.95*float64(o.rate) {
			fmt.Printf("NOTE: %s served %.0f of the %d req/s offered: saturated, its open-loop latency is time in a growing queue\n", tg.name, r, o.rate)
		}
		t := newTally()
		t.merge(closed[tg])
		t.merge(open[tg])
		warnWrong(tg.name, "under load", t.checked, t.wrong)
	}

	// 4. Memory.
	var mem []*rssSeries
	if o.rssRequests > 0 {
		fmt.Printf("memory, %d requests per server (VmRSS MiB at every 10%%)\n", o.rssRequests)
		mem, err = rssRun(ctx, rs, tgs, o.rssRequests, o.rssTimeout, o.sampleEvery*20)
		if err != nil {
			return err
		}
		for i, tg := range tgs {
			s := mem[i]
			var vals []string
			for _, v := range s.rss {
				vals = append(vals, fmt.Sprintf("%.0f", float64(v)/(1<<20)))
			}
			growth := "n/a"
			if g := s.growth(); !math.IsNaN(g) {
				growth = fmt.Sprintf("%+.1f%%", 100*g)
			}
			fmt.Printf("  %-12s %s  growth 20%%->100%%: %s  (%.0f req/s, %d errors)\n",
				tg.name, strings.Join(vals, " "), growth, float64(s.requests)/s.elapsed.Seconds(), s.errors)
			if s.incomplete {
				fmt.Printf("WARNING: %s: the memory run hit -rss-timeout %s after %d requests\n", tg.name, o.rssTimeout, s.at[len(s.at)-1])
			}
			if s.errors > 0 {
				fmt.Printf("WARNING: %s: %d failed requests in the memory run, first: %s\n", tg.name, s.errors, s.firstErr)
			}
			if tg == eg {
				warnWrong(tg.name, "memory run", s.checked, s.wrong)
			}
		}
	}

	// Targets.
	fmt.Printf("targets (load average now %s)\n", loadAvg())
	verdict := func(ok bool, what string) {
		v := "FAIL"
		if ok {
			v = "PASS"
		}
		fmt.Printf("  %s  %s\n", v, what)
	}
	a, b := closed[noop], closed[eg]
	verdict(b.rate() >= 0.5*a.rate(), fmt.Sprintf("throughput >= 50%% of no-op: %.0f vs %.0f req/s (%.0f%%)", b.rate(), a.rate(), 100*b.rate()/a.rate()))
	a, b = open[noop], open[eg]
	verdict(b.errors == 0 && b.pct(0.99) <= 2*a.pct(0.99), fmt.Sprintf("open-loop p99 <= 2x no-op: %.3f vs %.3f ms (%.1fx), %d errors", ms(b.pct(0.99)), ms(a.pct(0.99)), float64(b.pct(0.99))/float64(a.pct(0.99)), b.errors))
	verdict(ev.p50 <= 50, fmt.Sprintf("policy evaluation p50 <= 50 µs: %.1f µs", ev.p50))
	if aud != nil {
		verdict(aud.elapsed < 10*time.Second, fmt.Sprintf("audit of %d objects from files under 10 s: %.1f s (%.0f objects/s)", aud.objects, aud.elapsed.Seconds(), aud.rate()))
	} else {
		fmt.Println("  SKIP  audit of 10,000 objects (-audit-objects 0)")
	}
	if mem != nil && math.IsNaN(mem[1].growth()) {
		fmt.Println("  SKIP  RSS flat: too few samples before the time limit")
	} else if mem != nil {
		g := mem[1].growth()
		verdict(g < 0.20, fmt.Sprintf("RSS flat (growth 20%%->100%% < 20%%): %+.1f%% (no-op %+.1f%%)", 100*g, 100*mem[0].growth()))
	} else {
		fmt.Println("  SKIP  RSS flat (-rss-requests 0)")
	}
	return nil
}

// loadAvg is the machine's 1-minute load average: the benchmark shares
// the machine, and a busy one skews every figure.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}

func perReq(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

func protos(t *tally) string { return strings.Join(sortedKeys(t.protos), ",") }

// warnWrong reports answers that differ from the expectation.
func warnWrong(name, phase string, checked int, wrong map[string]int) {
	n := 0
	for _, c := range wrong {
		n += c
	}
	if n == 0 {
		return
	}
	fmt.Printf("WARNING: %s, %s: %d of %d checked answers are not the expected ones:\n", name, phase, n, checked)
	for _, k := range sortedKeys(wrong) {
		fmt.Printf("  %6d x %s\n", wrong[k], k)
	}
}

func printAudit(a *auditResult) {
	fmt.Printf("audit of %d generated objects in %d files (egress-guard audit -f, with an HTML report)\n", a.objects, a.files)
	fmt.Printf("  %-32s %12.2f\n", "elapsed s", a.elapsed.Seconds())
	fmt.Printf("  %-32s %12.0f\n", "objects/s", a.rate())
	fmt.Printf("  %-32s %12d\n", "findings", a.findings)
}

func printEval(n int, ev *evalResult) {
	fmt.Printf("policy evaluation in process, %d evaluations (input + the query of the request's webhook)\n", n)
	fmt.Printf("  %-32s %12.1f %12s\n", "p50 µs", ev.p50, "")
	fmt.Printf("  %-32s %12.1f %12s\n", "p99 µs", ev.p99, "")
	fmt.Printf("  %-32s %12.1f %12s\n", "input building p50 µs", ev.inputP50, "")
	fmt.Printf("  %-32s %s\n", "p50 µs by request", ev.byKind)
}

// evalResult is the in-process policy evaluation timing.
type evalResult struct {
	p50, p99 float64 // µs
	inputP50 float64 // µs spent building the input, of p50
	byKind   string
}

// policyEval times the engine on the request mix as the server evaluates
// it: building the input and running the query of the request's webhook
// (intents for /mutate, violations for /validate), one at a time. It also checks the
// engine's decisions against the expectations.
func policyEval(ctx context.Context, rs []*review, n int, profile string) (*evalResult, error) {
	cfg, err := config.Parse([]byte(benchConfig))
	if err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	e, err := engine.New(ctx, engine.Options{Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("policy engine: %w", err)
	}
	// With serve's GC target (its --gc-percent default), as the server
	// evaluates.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	reqs := map[*review]engine.Request{}
	for _, r := range rs {
		reqs[r] = engine.Request{
			Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: r.kind,
			Namespace: "default", Name: r.objName, UserInfo: r.userInfo, Object: r.object,
			Checked: true, // as the server's requests: decoded from the review by encoding/json
		}
	}
	var inputDone time.Time
	evalOne := func(r *review) (violations, intents int, err error) {
		in, err := e.Input(reqs[r])
		if err != nil {
			return 0, 0, err
		}
		inputDone = time.Now()
		if r.path == "/mutate" {
			i, err := e.Intents(ctx, in)
			return 0, len(i), err
		}
		v, err := e.Violations(ctx, in)
		return len(v), 0, err
	}
	wrong := map[string]int{}
	for _, r := range rs {
		v, i, err := evalOne(r)
		if err != nil {
			return nil, fmt.Errorf("evaluating %s: %w", r.name, err)
		}
		got := allowed
		switch {
		case r.path == "/validate" && v > 0:
			got = denied
		case r.path == "/mutate" && i > 0:
			got = patched
		}
		if got != r.want {
			wrong[fmt.Sprintf("%s %s: engine gives %d violations, %d intents: %s, want %s", r.name, r.path, v, i, got, r.want)]++
		}
	}
	warnWrong("engine", "in process", len(rs), wrong)

	p := newPicker(rs, 1)
	for range min(n, 2000) { // warm up
		if _, _, err := evalOne(p.next()); err != nil {
			return nil, err
		}
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	all, inputs := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	by := map[*review][]time.Duration{}
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := p.next()
		t0 := time.Now()
		if _, _, err := evalOne(r); err != nil {
			return nil, err
		}
		d := time.Since(t0)
		all = append(all, d)
		inputs = append(inputs, inputDone.Sub(t0))
		by[r] = append(by[r], d)
	}
	res := &evalResult{p50: quantile(all, 0.50), p99: quantile(all, 0.99), inputP50: quantile(inputs, 0.50)}
	var parts []string
	for _, r := range rs {
		if len(by[r]) > 0 {
			parts = append(parts, fmt.Sprintf("%s%s %.0f", r.name, map[string]string{"/mutate": " (m)", "/validate": ""}[r.path], quantile(by[r], 0.5)))
		}
	}
	res.byKind = strings.Join(parts, ", ")
	return res, nil
}

// quantile is the q-quantile of ds in µs.
func quantile(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := max(0, min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1))
	return float64(s[i]) / float64(time.Microsecond)
}
