// Command bench measures what egress-guard costs an API server, against a
// baseline: a no-op controller-runtime webhook (./noop) that admits
// everything.
//
// Both servers run as separate processes on 127.0.0.1 with the same
// self-signed serving certificate and the same Go GC target (GOGC set for
// both to serve's --gc-percent default, read from `egress-guard serve
// --help`; -gc-percent overrides it), pinned to -server-cpus while the
// bench itself, the load generator, runs on other CPUs (`make bench` does
// this with taskset). Both get the same request mix: full AdmissionReview
// (admission.k8s.io/v1) requests for Istio ServiceEntries, VirtualServices
// and DestinationRules, about 40% allowed, 30% denied and 30% patched by
// egress-guard, posted over TLS to /validate and /mutate, by default over
// HTTP/1.1 on -conns 8 keep-alive connections (-http2: HTTP/2, one
// connection per worker). A sample of egress-guard's answers is checked
// against the expected decision; a mismatch is reported, not fatal.
//
// It measures:
//
//  1. closed-loop saturation: one worker per connection sends back to back
//     for -duration (in -rounds alternating between the servers) after
//     -warmup: throughput, p50/p99/p99.9 latency, and server CPU per
//     request (utime+stime from /proc/<pid>/stat over the requests served);
//  2. open loop at -open-load (50%) of egress-guard's closed-loop
//     throughput just measured, both servers at that same rate (-rate sets
//     it instead) for -duration: every request is sent at its intended time
//     and its latency counts from that time, so a server stall is charged
//     to every request queued behind it (no coordinated omission):
//     p50/p99/p99.9 of the answered requests, errors (timeouts included)
//     counted apart, server CPU per request;
//  3. the admission decision in process: the mutating and validating
//     handlers' Handle on admission.Requests decoded from the mix's reviews
//     as controller-runtime decodes them, with serve's worker pool: all the
//     handler does per request (typed decoding and checks, input, queries,
//     mutators, patch). -eval-n decisions timed one by one: p50/p99; then
//     the same through controller-runtime's admission.Webhook, review
//     decoding and answer encoding included;
//  4. the audit of -audit-objects generated objects from files;
//  5. memory: -rss-requests requests to each server, in ten steps; VmRSS
//     from /proc/<pid>/status is sampled at every 10%, and the growth from
//     the 20% mark to the end tells whether memory is flat.
//
// With -churn it measures instead serve --inventory against a real
// kube-apiserver and etcd (envtest, the binaries in -assets, Istio's CRDs
// from the istio.io/api module) holding -churn-objects ServiceEntries
// (half of them with wildcard hosts), changed at -churn-rate per second:
// serve's peak RSS during the churn, its open-loop p99 with and without the
// churn (at -open-load of its saturation with the inventory), and the time
// from a ServiceEntry change to a decision that uses it (see churn.go).
//
// It then prints the targets with PASS or FAIL and the figures: closed-loop
// throughput at least 60% of the no-op's, server CPU per request at most
// 1.7x, closed-loop p99.9 at most 3x; open-loop p99 at most 2x; the
// in-process decision (Handle) p50 at most 50µs; the audit of 10,000
// objects under 10 s; RSS growth under 20%. With -churn: serve's peak RSS
// during the churn under 150 MiB, its open-loop p99 during the churn at most
// 1.2x that without, a change's way into decisions p99 under 50 ms. It exits
// non-zero only when the benchmark cannot run, not on a missed target.
//
// Usage (from the module root; `make bench` builds egress-guard first and
// runs both modes pinned):
//
//	go run ./test/bench -egress-guard bin/egress-guard
//	go run ./test/bench -egress-guard bin/egress-guard -duration 3s -rss-requests 20000
//	go run ./test/bench -egress-guard bin/egress-guard -http2 -conns 32
//	go run ./test/bench -egress-guard bin/egress-guard -churn
//
// The client shares the machine with the servers: on a small machine the
// absolute figures say as much about the client as about the servers, and
// the ratios and CPU per request are the figures to compare.
package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egress-guard/egress-guard/test/harness"
)

type options struct {
	egressGuard  string
	extraArgs    string
	noop         string
	conns        int
	http2        bool
	warmup       time.Duration
	duration     time.Duration
	rounds       int
	rate         int
	openLoad     float64
	gcPercent    int
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
	only         string
	modelObjects int
	modelOnly    bool
	// serveMemoryLimit is serve's --memory-limit.
	serveMemoryLimit string

	churn        bool
	churnObjects int
	churnRate    float64
	churnProbes  int
	assets       string
}

// pinned is the command line that runs bin with args on the servers' CPUs.
// taskset execs bin, so the process is bin's (its /proc CPU times too).
func (o options) pinned(bin string, args ...string) []string {
	if o.serverCPUs == "" {
		return append([]string{bin}, args...)
	}
	return append([]string{"taskset", "-c", o.serverCPUs, bin}, args...)
}

// protocol names what the clients speak.
func (o options) protocol() string {
	if o.http2 {
		return fmt.Sprintf("HTTP/2 when offered, %d connections (one per worker)", o.conns)
	}
	return fmt.Sprintf("HTTP/1.1, %d keep-alive connections", o.conns)
}

// newClients are the clients of one server's workers: in HTTP/2 mode one
// transport, so one connection, each; in HTTP/1.1 mode one transport of
// o.conns connections shared by all (a request waits for a free one).
func (o options) newClients(pool *x509.CertPool) []*http.Client {
	cs := make([]*http.Client, o.conns)
	shared := newTransport(pool, false, o.conns)
	for i := range cs {
		t := shared
		if o.http2 {
			t = newTransport(pool, true, 1)
		}
		cs[i] = &http.Client{Transport: t, Timeout: 10 * time.Second}
	}
	return cs
}

// onlineCPUs is the machine's CPU list (runtime.NumCPU counts only the
// CPUs this process may run on).
func onlineCPUs() string {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return strconv.Itoa(runtime.NumCPU())
	}
	return strings.TrimSpace(string(b))
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
	flag.StringVar(&o.serveMemoryLimit, "serve-memory-limit", "204Mi", "serve's --memory-limit: 80% of the chart's default container limit (256Mi), as serve sets it in a pod; none for no limit")
	flag.StringVar(&o.extraArgs, "egress-guard-args", "", "extra arguments for `egress-guard serve`, space separated")
	flag.StringVar(&o.noop, "noop", "", "path to a prebuilt no-op server (default: build ./test/bench/noop)")
	flag.IntVar(&o.conns, "conns", 8, "client connections per server, one closed-loop worker each")
	flag.IntVar(&o.conns, "concurrency", 8, "the same as -conns")
	flag.BoolVar(&o.http2, "http2", false, "speak HTTP/2 (one connection per worker) instead of HTTP/1.1")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "closed-loop warmup before measuring")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "duration of the closed-loop and of each open-loop run")
	flag.IntVar(&o.rounds, "rounds", 5, "closed-loop rounds the duration is split into, alternating between the servers")
	flag.Float64Var(&o.openLoad, "open-load", 0.5, "open-loop rate as a fraction of egress-guard's closed-loop throughput measured in the same run")
	flag.IntVar(&o.rate, "rate", 0, "open-loop request rate, requests/s (0: -open-load of egress-guard's saturation)")
	flag.IntVar(&o.gcPercent, "gc-percent", 0, "GOGC of both servers and of the in-process evaluation (0: serve's --gc-percent default)")
	flag.Int64Var(&o.rssRequests, "rss-requests", 1_000_000, "requests per server in the memory run (0 skips it)")
	flag.DurationVar(&o.rssTimeout, "rss-timeout", 30*time.Minute, "time limit of the memory run")
	flag.IntVar(&o.evalN, "eval-n", 20000, "in-process admission decisions to time")
	flag.IntVar(&o.sampleEvery, "sample-every", 50, "check every n-th answer of each worker against the expectation")
	flag.StringVar(&o.evalProfile, "eval-cpuprofile", "", "write a CPU profile of the in-process decisions (Handle) to this file")
	flag.IntVar(&o.auditObjects, "audit-objects", 10000, "objects the audit benchmark generates and audits (0 skips it)")
	flag.BoolVar(&o.auditOnly, "audit-only", false, "run the evaluation and audit benchmarks only")
	flag.BoolVar(&o.evalOnly, "eval-only", false, "time the in-process admission decisions only")
	flag.StringVar(&o.serverCPUs, "server-cpus", "", "CPU list the servers are pinned to with taskset (e.g. 1); run the bench itself pinned to others (taskset -c 0 bench ...); empty: not pinned")
	flag.StringVar(&o.only, "only", "", "keep only the mix's reviews whose name starts with this (e.g. Pod), to measure one kind's share")
	flag.IntVar(&o.modelObjects, "model-objects", 10000, "objects of each kind of the cluster model measured in process (0 skips it)")
	flag.BoolVar(&o.modelOnly, "model-only", false, "measure the cluster model in process only")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (certificates, config, server logs)")
	flag.BoolVar(&o.churn, "churn", false, "measure serve --inventory under ServiceEntry churn against a real kube-apiserver and etcd instead")
	flag.IntVar(&o.churnObjects, "churn-objects", 5000, "ServiceEntries in the cluster (-churn), half with wildcard hosts")
	flag.Float64Var(&o.churnRate, "churn-rate", 20, "ServiceEntry changes per second during the churn (-churn)")
	flag.IntVar(&o.churnProbes, "churn-probes", 25, "ServiceEntries created, then deleted, to time how soon decisions use a change (-churn)")
	flag.StringVar(&o.assets, "assets", "", "directory of kube-apiserver and etcd (-churn; default $KUBEBUILDER_ASSETS, else .cache/bin of the module)")
	flag.Parse()
	if o.egressGuard == "" || o.conns < 1 || o.rate < 0 || o.openLoad <= 0 || o.duration <= 0 || o.rounds < 1 || o.evalN < 1 ||
		o.churnObjects < 2 || o.churnRate <= 0 || o.churnProbes < 1 {
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

// bench is what both modes share.
type bench struct {
	o       options
	bin     string // egress-guard
	dir     string // temporary: certificates, config, logs
	cfgPath string
	rs      []*review
	pool    *x509.CertPool
	probe   *http.Client
	// gcPercent is both servers' GOGC; gcSource says where it comes from.
	gcPercent int
	gcSource  string
}

// env is the environment of both servers.
func (b *bench) env() []string { return []string{"GOGC=" + strconv.Itoa(b.gcPercent)} }

// startServe starts `egress-guard serve` with the bench's configuration and
// more arguments, and returns it with its metrics address.
func (b *bench) startServe(ctx context.Context, more ...string) (*server, string, error) {
	ports, err := harness.FreePorts(3)
	if err != nil {
		return nil, "", err
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{"serve", "--cert-dir", b.dir, "--bind-address", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
		"--config", b.cfgPath,
		// The bench measures decisions, not overload answers (HTTP 429
		// beyond the default bound of ten per CPU): room for every
		// connection's request, and for the open loop's requests of HTTP/2
		// streams.
		"--max-concurrent-requests", strconv.Itoa(max(b.o.conns, 64)),
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		// As in the chart's pods: 80% of the default container limit,
		// 256Mi (serve reads it from its cgroup; here there is none).
		"--memory-limit", b.o.serveMemoryLimit}
	args = append(args, more...)
	args = append(args, strings.Fields(b.o.extraArgs)...)
	srv, err := start(ctx, "egress-guard", b.dir, ports[0],
		[]string{fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2]), fmt.Sprintf("https://127.0.0.1:%d/readyz", ports[0])}, b.probe,
		b.env(), b.o.pinned(b.bin, args...))
	return srv, metricsAddr, err
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
	if rs, err = only(rs, o.only); err != nil {
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
	b := &bench{o: o, bin: bin, dir: dir, rs: rs, gcPercent: o.gcPercent, gcSource: "-gc-percent"}
	if b.gcPercent <= 0 {
		b.gcPercent, b.gcSource = serveGCPercent(ctx, bin)
	}
	b.cfgPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(b.cfgPath, []byte(benchConfig), 0o600); err != nil {
		return err
	}
	if o.churn {
		if b.pool, err = writeCerts(dir); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		b.probe = &http.Client{Transport: newTransport(b.pool, false, 4), Timeout: 5 * time.Second}
		return churnBench(ctx, b)
	}

	if o.modelOnly {
		model, err := modelBench(ctx, o.modelObjects, 200)
		if err != nil {
			return fmt.Errorf("the cluster model: %w", err)
		}
		printModel(model)
		return nil
	}

	// 3. The decisions in process first, while nothing else runs.
	ev, err := handlerEval(ctx, rs, o.evalN, b.gcPercent, o.evalProfile)
	if err != nil {
		return err
	}
	if o.evalOnly {
		printEval(o.evalN, ev)
		return nil
	}

	// 4. The audit of generated files, also while nothing else runs.
	var aud *auditResult
	if o.auditObjects > 0 {
		if aud, err = auditBench(ctx, bin, dir, b.cfgPath, rs, o.auditObjects); err != nil {
			return err
		}
		if o.auditOnly {
			printEval(o.evalN, ev)
			printAudit(aud)
			return nil
		}
	}

	// 5. The cluster model in process, also while nothing else runs.
	var model *modelResult
	if o.modelObjects > 0 {
		if model, err = modelBench(ctx, o.modelObjects, 200); err != nil {
			return fmt.Errorf("the cluster model: %w", err)
		}
	}

	if b.pool, err = writeCerts(dir); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	b.probe = &http.Client{Transport: newTransport(b.pool, false, 4), Timeout: 5 * time.Second}
	noopBin := o.noop
	if noopBin == "" {
		if noopBin, err = buildNoop(ctx, dir); err != nil {
			return err
		}
	}
	noopPort, err := freePort()
	if err != nil {
		return err
	}
	noopSrv, err := start(ctx, "noop", dir, noopPort,
		[]string{fmt.Sprintf("https://127.0.0.1:%d/readyz", noopPort)}, b.probe, b.env(),
		o.pinned(noopBin, "--cert-dir", dir, "--bind-address", "127.0.0.1", "--port", strconv.Itoa(noopPort)))
	if err != nil {
		return err
	}
	defer noopSrv.stop()
	egSrv, _, err := b.startServe(ctx)
	if err != nil {
		return err
	}
	defer egSrv.stop()

	noop := &target{server: noopSrv, clients: o.newClients(b.pool), expect: func(*review) outcome { return allowed }}
	eg := &target{server: egSrv, clients: o.newClients(b.pool), expect: func(r *review) outcome { return r.want }}
	tgs := []*target{noop, eg}

	// Every kind of request once, answers checked.
	for _, tg := range tgs {
		if err := tg.firstPass(ctx, rs); err != nil {
			return err
		}
	}

	fmt.Printf("egress-guard bench: CPUs %s (load average %s), %s, %s runs (+%s warmup), memory run %d req/server\n",
		onlineCPUs(), loadAvg(), o.protocol(), o.duration, o.warmup, o.rssRequests)
	fmt.Printf("  CPUs: the servers %s, the load generator %s; both servers GOGC=%d (%s); serve --memory-limit %s\n",
		cmp.Or(o.serverCPUs, "any"), allowedCPUs(), b.gcPercent, b.gcSource, o.serveMemoryLimit)

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
	// 2. Open loop, both servers at the same rate: a share of egress-guard's
	// saturation just measured.
	rate, rateFrom := o.openRate(closed[eg].rate())
	open := map[*target]*tally{}
	for _, tg := range tgs {
		t, err := tg.openLoop(ctx, rs, rate, o.duration, o.sampleEvery)
		if err != nil {
			return err
		}
		open[tg] = t
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	fmt.Printf("\n%-34s %12s %12s %8s\n", "", "no-op", "egress-guard", "ratio")
	for _, ph := range []struct {
		title string
		res   map[*target]*tally
	}{
		{fmt.Sprintf("closed loop, %d workers, %s", o.conns, o.duration), closed},
		{fmt.Sprintf("open loop, %d req/s (%s), %s", rate, rateFrom, o.duration), open},
	} {
		a, b := ph.res[noop], ph.res[eg]
		fmt.Printf("%s (%s | %s)\n", ph.title, protos(a), protos(b))
		printTallies(a, b)
	}
	printEval(o.evalN, ev)
	if model != nil {
		printModel(model)
	}

	for _, tg := range tgs {
		for _, t := range []*tally{closed[tg], open[tg]} {
			if t.errors > 0 {
				fmt.Printf("WARNING: %s: %d failed requests, first: %s\n", tg.name, t.errors, t.firstErr)
			}
		}
		if r := open[tg].rate(); r < 0.95*float64(rate) {
			fmt.Printf("NOTE: %s served %.0f of the %d req/s offered: saturated, its open-loop latency is time in a growing queue\n", tg.name, r, rate)
		}
		t := newTally()
		t.merge(closed[tg])
		t.merge(open[tg])
		warnWrong(tg.name, "under load", t.checked, t.wrong)
	}

	// 6. Memory.
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
				vals = append(vals, fmt.Sprintf("%.0f", mib(v)))
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
	a, e := closed[noop], closed[eg]
	verdict(e.errors == 0 && e.rate() >= 0.60*a.rate(), fmt.Sprintf("closed-loop throughput >= 60%% of no-op: %.0f vs %.0f req/s (%s), %d errors", e.rate(), a.rate(), pctOf(e.rate(), a.rate()), e.errors))
	verdict(ratio(e.cpuPerReq(), a.cpuPerReq()) <= 1.7, fmt.Sprintf("server CPU per request <= 1.7x no-op: %.0f vs %.0f µs (%sx)", e.cpuPerReq(), a.cpuPerReq(), fmtRatio(e.cpuPerReq(), a.cpuPerReq())))
	verdict(ratio(ms(e.pct(0.999)), ms(a.pct(0.999))) <= 3, fmt.Sprintf("closed-loop p99.9 at saturation <= 3x no-op: %.3f vs %.3f ms (%sx)", ms(e.pct(0.999)), ms(a.pct(0.999)), fmtRatio(ms(e.pct(0.999)), ms(a.pct(0.999)))))
	a, e = open[noop], open[eg]
	verdict(e.errors == 0 && ratio(ms(e.pct(0.99)), ms(a.pct(0.99))) <= 2, fmt.Sprintf("open-loop p99 at %d req/s <= 2x no-op: %.3f vs %.3f ms (%sx), %d errors", rate, ms(e.pct(0.99)), ms(a.pct(0.99)), fmtRatio(ms(e.pct(0.99)), ms(a.pct(0.99))), e.errors))
	verdict(ev.p50 <= 50, fmt.Sprintf("admission decision in process (Handle) p50 <= 50 µs: %.1f µs (p99 %.1f µs)", ev.p50, ev.p99))
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

// openRate is the open loop's rate: -rate, or -open-load of saturation.
func (o options) openRate(saturation float64) (int, string) {
	if o.rate > 0 {
		return o.rate, "-rate"
	}
	return max(1, int(math.Round(o.openLoad*saturation))), fmt.Sprintf("%.0f%% of egress-guard's %.0f req/s", 100*o.openLoad, saturation)
}

// firstPass sends every review of the mix once and checks the answers.
func (tg *target) firstPass(ctx context.Context, rs []*review) error {
	t := newTally()
	for _, r := range rs {
		tg.send(ctx, tg.clients[0], r, true, t)
	}
	if t.errors > 0 {
		return fmt.Errorf("%s: %d of %d requests failed: %s\n%s", tg.name, t.errors, len(rs), t.firstErr, tg.logTail())
	}
	warnWrong(tg.name, "first pass", t.checked, t.wrong)
	return nil
}

// printTallies prints two runs side by side with their ratio.
func printTallies(a, b *tally) {
	row("  throughput req/s", a.rate(), b.rate(), "%.0f")
	row("  latency p50 ms", ms(a.pct(0.50)), ms(b.pct(0.50)), "%.3f")
	row("  latency p99 ms", ms(a.pct(0.99)), ms(b.pct(0.99)), "%.3f")
	row("  latency p99.9 ms", ms(a.pct(0.999)), ms(b.pct(0.999)), "%.3f")
	row("  server CPU µs/req", a.cpuPerReq(), b.cpuPerReq(), "%.0f")
	row("  server CPU cores busy", a.serverCPU.Seconds()/a.elapsed.Seconds(), b.serverCPU.Seconds()/b.elapsed.Seconds(), "%.2f")
	row("  bench client CPU µs/req", perReq(a.selfCPU, a.requests), perReq(b.selfCPU, b.requests), "%.0f")
	fmt.Printf("  %-32s %12d %12d\n", "errors", a.errors, b.errors)
}

func row(label string, a, b float64, format string) {
	fmt.Printf("%-34s %12s %12s %8s\n", label, fmt.Sprintf(format, a), fmt.Sprintf(format, b), fmtRatio(b, a))
}

// ratio is b/a, +Inf when a is 0.
func ratio(b, a float64) float64 {
	if a <= 0 {
		return math.Inf(1)
	}
	return b / a
}

func fmtRatio(b, a float64) string {
	if a <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", b/a)
}

func pctOf(b, a float64) string {
	if a <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*b/a)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func verdict(ok bool, what string) {
	v := "FAIL"
	if ok {
		v = "PASS"
	}
	fmt.Printf("  %s  %s\n", v, what)
}

// serveGCPercent is the GC target `egress-guard serve` sets: its
// --gc-percent default as its help shows it, else Go's default.
func serveGCPercent(ctx context.Context, bin string) (int, string) {
	out, _ := exec.CommandContext(ctx, bin, "serve", "--help").CombinedOutput()
	if n, ok := gcPercentDefault(out); ok {
		return n, "serve's --gc-percent default"
	}
	return 100, "Go's default: serve has no --gc-percent default"
}

// gcPercentDefault reads the --gc-percent default from a command's help.
func gcPercentDefault(help []byte) (int, bool) {
	m := regexp.MustCompile(`--gc-percent int[^\n]*\(default (\d+)\)`).FindSubmatch(help)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(m[1]))
	return n, err == nil && n > 0
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

// quantile is the q-quantile of ds in µs.
func quantile(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := max(0, min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1))
	return float64(s[i]) / float64(time.Microsecond)
}
