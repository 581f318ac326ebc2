package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/egress-guard/egress-guard/test/harness"
)

// The churn bench: `egress-guard serve --inventory` against a real
// kube-apiserver and etcd with Istio's CRDs, holding -churn-objects
// ServiceEntries in churnNamespaces namespaces: the even ones with one exact
// host, the odd ones with one "*." wildcard host. It measures, in order:
//
//   - serve's closed-loop saturation with that inventory, and from it the
//     open-loop rate (-open-load of it, or -rate);
//   - the open loop without changes, then the same with the ServiceEntries
//     changing at -churn-rate per second (mostly host updates, some
//     creations and deletions); serve's VmRSS is sampled every 200 ms from
//     the start of the churn to its end;
//   - while the churn goes on, the time from a ServiceEntry change to a
//     decision that uses it: -churn-probes times, a MESH_EXTERNAL
//     ServiceEntry is created for a host without dots, which makes that
//     host external, and a review of a VirtualService routing to it is
//     posted every millisecond until serve denies it (EGR202); then the
//     ServiceEntry is deleted and the review posted until it is admitted
//     again. The time counts from the API server's answer to the create or
//     delete.
//
// The engine rebuilds during the churn are read from serve's metrics
// (egress_guard_inventory_updates_total; egress_guard_policy_compiles_total
// when serve has it, else n/a).

const churnNamespaces = 10

var serviceEntries = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}

func churnNamespace(i int) string { return fmt.Sprintf("inventory-%02d", i%churnNamespaces) }

// seHost is the host of the i-th ServiceEntry in its gen-th version.
func seHost(i, gen int) string {
	if i%2 == 1 {
		return fmt.Sprintf("*.team-%05d-v%d.example.org", i, gen)
	}
	return fmt.Sprintf("api-%05d-v%d.partner.example.net", i, gen)
}

// serviceEntry is a MESH_EXTERNAL ServiceEntry for host.
func serviceEntry(namespace, name, host string) *unstructured.Unstructured {
	resolution := "DNS"
	if strings.HasPrefix(host, "*.") {
		resolution = "NONE"
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "ServiceEntry",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"hosts":      []any{host},
			"location":   "MESH_EXTERNAL",
			"resolution": resolution,
			"ports":      []any{map[string]any{"number": int64(443), "name": "tls", "protocol": "TLS"}},
		},
	}}
}

func churnBench(ctx context.Context, b *bench) error {
	o := b.o
	assets := cmp.Or(o.assets, os.Getenv("KUBEBUILDER_ASSETS"))
	if assets == "" {
		root, err := harness.RepoRoot()
		if err != nil {
			return err
		}
		assets = filepath.Join(root, ".cache", "bin")
	}
	t0 := time.Now()
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Assets: assets})
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}()
	cpUp := time.Since(t0)
	rc := rest.CopyConfig(cp.Config)
	rc.QPS, rc.Burst = 5000, 10000
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	ses := dyn.Resource(serviceEntries)
	for i := range churnNamespaces {
		if _, err := cp.EnsureNamespace(ctx, churnNamespace(i)); err != nil {
			return err
		}
	}

	srv, metricsAddr, err := b.startServe(ctx, "--inventory", "--kubeconfig", cp.Kubeconfig)
	if err != nil {
		return err
	}
	defer srv.stop()
	tg := &target{server: srv, clients: o.newClients(b.pool), expect: func(r *review) outcome { return r.want }}
	pr := &prober{tg: tg, ses: ses}
	rssEmpty, err := srv.rss()
	if err != nil {
		return err
	}

	// The inventory: created while serve runs, then waited for through a
	// decision (the inventory in force is a snapshot of the watch, which
	// delivers the changes in order: once serve decides with a later
	// ServiceEntry, it has the earlier ones too).
	t0 = time.Now()
	if err := createServiceEntries(ctx, ses, o.churnObjects, 16); err != nil {
		return err
	}
	created := time.Since(t0)
	if _, _, err := pr.probe(ctx, "probe-sync", 2*time.Minute); err != nil {
		return fmt.Errorf("serve's decisions never used the ServiceEntries: %w\n%s", err, srv.logTail())
	}
	inForce := time.Since(t0)
	gauge := scrapeMetric(ctx, metricsAddr, "egress_guard_inventory_service_entries")
	rssLoaded, err := srv.rss()
	if err != nil {
		return err
	}
	if err := tg.firstPass(ctx, b.rs); err != nil {
		return err
	}

	fmt.Printf("egress-guard churn bench: CPUs %s (load average %s), %s, %d ServiceEntries (%d with a wildcard host) in %d namespaces, %g changes/s\n",
		onlineCPUs(), loadAvg(), o.protocol(), o.churnObjects, o.churnObjects/2, churnNamespaces, o.churnRate)
	fmt.Printf("  CPUs: serve %s; the load generator, kube-apiserver and etcd %s; serve GOGC=%d (%s), --memory-limit %s\n",
		cmp.Or(o.serverCPUs, "any"), allowedCPUs(), b.gcPercent, b.gcSource, o.serveMemoryLimit)
	fmt.Printf("  control plane up in %.1f s; %d ServiceEntries created in %.1f s (%.0f/s), in serve's decisions %.1f s after the first create; egress_guard_inventory_service_entries %s\n",
		cpUp.Seconds(), o.churnObjects, created.Seconds(), float64(o.churnObjects)/created.Seconds(), inForce.Seconds(), gauge)
	fmt.Printf("  serve VmRSS: %.0f MiB without ServiceEntries, %.0f MiB with them\n", mib(rssEmpty), mib(rssLoaded))

	// Saturation with the inventory, no changes.
	if _, err := tg.closedLoop(ctx, b.rs, o.warmup, math.MaxInt64, false, 0); err != nil {
		return err
	}
	sat, err := tg.closedLoop(ctx, b.rs, o.duration, math.MaxInt64, true, o.sampleEvery)
	if err != nil {
		return err
	}
	rate, rateFrom := o.openRate(sat.rate())

	cpus0 := readCPUTimes(o.serverCPUs)
	quiet, err := tg.openLoop(ctx, b.rs, rate, o.duration, o.sampleEvery)
	if err != nil {
		return err
	}
	cpus1 := readCPUTimes(o.serverCPUs)

	// The churn: the open loop again, then the probes.
	updates0 := scrapeMetric(ctx, metricsAddr, "egress_guard_inventory_updates_total")
	compiles0 := scrapeMetric(ctx, metricsAddr, "egress_guard_policy_compiles_total")
	rssSeen := sampleRSS(srv, 200*time.Millisecond)
	ch := startChurn(ctx, ses, o.churnObjects, o.churnRate)
	cpus2 := readCPUTimes(o.serverCPUs)
	busy, err := tg.openLoop(ctx, b.rs, rate, o.duration, o.sampleEvery)
	if err != nil {
		ch.stop()
		rssSeen()
		return err
	}
	cpus3 := readCPUTimes(o.serverCPUs)
	var created2, deleted []time.Duration
	var probeErr error
	for i := range o.churnProbes {
		c, d, err := pr.probe(ctx, fmt.Sprintf("probe-%03d", i), 10*time.Second)
		if err != nil {
			probeErr = err
			break
		}
		created2, deleted = append(created2, c), append(deleted, d)
		time.Sleep(50 * time.Millisecond)
	}
	changes := ch.stop()
	rss := rssSeen()
	updates1 := scrapeMetric(ctx, metricsAddr, "egress_guard_inventory_updates_total")
	compiles1 := scrapeMetric(ctx, metricsAddr, "egress_guard_policy_compiles_total")
	if err := srv.alive(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	fmt.Printf("\nclosed loop with the inventory, %d workers, %s (%s)\n", o.conns, o.duration, protos(sat))
	fmt.Printf("  %-32s %12.0f\n", "throughput req/s", sat.rate())
	fmt.Printf("  %-32s %12.3f %.3f %.3f\n", "latency p50 p99 p99.9 ms", ms(sat.pct(0.50)), ms(sat.pct(0.99)), ms(sat.pct(0.999)))
	fmt.Printf("  %-32s %12.0f\n", "server CPU µs/req", sat.cpuPerReq())
	fmt.Printf("\nopen loop, %d req/s (%s), %s (%s | %s)\n", rate, rateFrom, o.duration, protos(quiet), protos(busy))
	fmt.Printf("%-34s %12s %12s %8s\n", "", "no churn", "churn", "ratio")
	printTallies(quiet, busy)
	// What else ran on serve's CPUs: on a shared host, other processes
	// there delay serve's answers as much as its own work does.
	others := func(a, b cpuTimes, t *tally) float64 {
		return b.sub(a).busy.Seconds()/t.elapsed.Seconds() - t.serverCPU.Seconds()/t.elapsed.Seconds()
	}
	if o.serverCPUs != "" && cpus0.ok && cpus1.ok && cpus2.ok && cpus3.ok {
		q, c := others(cpus0, cpus1, quiet), others(cpus2, cpus3, busy)
		fmt.Printf("  %-32s %12.2f %12.2f\n", "others on serve's CPUs, cores", q, c)
		if q > 0.05 || c > 0.05 {
			fmt.Printf("NOTE: other processes used serve's CPUs (%s) during the open loop: its latency counts their time too\n", o.serverCPUs)
		}
	}
	fmt.Printf("churn: %d changes in %.1f s (%.1f/s; %d updates, %d creates, %d deletes, %d probe changes), %d failed\n",
		changes.done, changes.elapsed.Seconds(), float64(changes.done)/changes.elapsed.Seconds(),
		changes.updates, changes.creates, changes.deletes, 2*len(created2), changes.errors)
	if changes.firstErr != "" {
		fmt.Printf("WARNING: churn: first failed change: %s\n", changes.firstErr)
	}
	fmt.Printf("  %-32s %s\n", "engine rebuilds", delta("egress_guard_inventory_updates_total", updates0, updates1))
	fmt.Printf("  %-32s %s\n", "policy compiles", delta("egress_guard_policy_compiles_total", compiles0, compiles1))
	fmt.Printf("  %-32s %.0f / %.0f / %.0f (%d samples)\n", "serve VmRSS MiB min/median/max", mib(rss.min()), mib(rss.median()), mib(rss.max()), len(rss))
	both := slices.Concat(created2, deleted)
	if len(both) > 0 {
		fmt.Printf("change to decision, during the churn: %d creates and %d deletes (ms from the API server's answer)\n", len(created2), len(deleted))
		for _, s := range []struct {
			label string
			ds    []time.Duration
		}{{"create", created2}, {"delete", deleted}, {"all", both}} {
			fmt.Printf("  %-8s p50 %8.1f  p99 %8.1f  max %8.1f\n", s.label, quantile(s.ds, 0.5)/1000, quantile(s.ds, 0.99)/1000, quantile(s.ds, 1)/1000)
		}
	}
	if probeErr != nil {
		fmt.Printf("WARNING: change to decision: %v\n", probeErr)
	}
	for _, t := range []*tally{sat, quiet, busy} {
		if t.errors > 0 {
			fmt.Printf("WARNING: egress-guard: %d failed requests, first: %s\n", t.errors, t.firstErr)
		}
	}
	all := newTally()
	all.merge(sat)
	all.merge(quiet)
	all.merge(busy)
	warnWrong("egress-guard", "under load with the inventory", all.checked, all.wrong)
	if r := busy.rate(); r < 0.95*float64(rate) {
		fmt.Printf("NOTE: serve answered %.0f of the %d req/s offered during the churn: saturated, its latency is time in a growing queue\n", r, rate)
	}

	fmt.Printf("targets (load average now %s)\n", loadAvg())
	verdict(len(rss) > 0 && rss.max() < 150<<20, fmt.Sprintf("serve RSS during the churn < 150 MiB: peak %.0f MiB", mib(rss.max())))
	r := ratio(ms(busy.pct(0.99)), ms(quiet.pct(0.99)))
	verdict(busy.errors == 0 && r <= 1.2, fmt.Sprintf("open-loop p99 during the churn <= 1.2x without: %.3f vs %.3f ms (%sx), %d errors",
		ms(busy.pct(0.99)), ms(quiet.pct(0.99)), fmtRatio(ms(busy.pct(0.99)), ms(quiet.pct(0.99))), busy.errors))
	if len(both) == 0 {
		verdict(false, fmt.Sprintf("change to decision p99 < 50 ms: no measurement (%v)", probeErr))
	} else {
		p99 := quantile(both, 0.99) / 1000
		verdict(probeErr == nil && p99 < 50, fmt.Sprintf("change to decision p99 < 50 ms: %.1f ms over %d changes", p99, len(both)))
	}
	return nil
}

// createServiceEntries creates the n ServiceEntries of the inventory with
// workers in parallel.
func createServiceEntries(ctx context.Context, ses dynamic.NamespaceableResourceInterface, n, workers int) error {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				ns := churnNamespace(i)
				if _, err := ses.Namespace(ns).Create(ctx, serviceEntry(ns, fmt.Sprintf("se-%05d", i), seHost(i, 0)), metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating ServiceEntry %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// churnStats counts the changes a churn made.
type churnStats struct {
	done, errors              int
	updates, creates, deletes int
	elapsed                   time.Duration
	firstErr                  string
}

type churn struct {
	cancel context.CancelFunc
	done   chan churnStats
}

func (c *churn) stop() churnStats {
	c.cancel()
	return <-c.done
}

// startChurn changes the ServiceEntries at rate per second until stopped:
// of every eight changes, six move a ServiceEntry to a new host (the next
// one in turn), one creates an extra ServiceEntry and one deletes the
// oldest extra one.
func startChurn(ctx context.Context, ses dynamic.NamespaceableResourceInterface, n int, rate float64) *churn {
	ctx, cancel := context.WithCancel(ctx)
	c := &churn{cancel: cancel, done: make(chan churnStats, 1)}
	go func() {
		var st churnStats
		start := time.Now()
		interval := time.Duration(float64(time.Second) / rate)
		var extra []int
		next, gen := 0, 1
		for k := 0; ; k++ {
			// Each change at its own time: a slow one delays the next,
			// and the rate achieved is reported.
			if w := time.Until(start.Add(time.Duration(k) * interval)); w > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(w):
				}
			}
			if ctx.Err() != nil {
				break
			}
			var err error
			switch {
			case k%8 == 3:
				ns, name := churnNamespace(k), fmt.Sprintf("extra-%06d", k)
				_, err = ses.Namespace(ns).Create(ctx, serviceEntry(ns, name, seHost(k, 0)), metav1.CreateOptions{})
				if err == nil {
					extra = append(extra, k)
				}
				st.creates++
			case k%8 == 7 && len(extra) > 0:
				e := extra[0]
				extra = extra[1:]
				err = ses.Namespace(churnNamespace(e)).Delete(ctx, fmt.Sprintf("extra-%06d", e), metav1.DeleteOptions{})
				st.deletes++
			default:
				i := next
				if next++; next == n {
					next, gen = 0, gen+1
				}
				patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"hosts": []string{seHost(i, gen)}}})
				_, err = ses.Namespace(churnNamespace(i)).Patch(ctx, fmt.Sprintf("se-%05d", i), types.MergePatchType, patch, metav1.PatchOptions{})
				st.updates++
			}
			if err != nil && ctx.Err() == nil {
				st.errors++
				if st.firstErr == "" {
					st.firstErr = err.Error()
				}
				continue
			}
			if err == nil {
				st.done++
			}
		}
		st.elapsed = time.Since(start)
		c.done <- st
	}()
	return c
}

// prober times how soon serve's decisions follow a ServiceEntry change.
type prober struct {
	tg  *target
	ses dynamic.NamespaceableResourceInterface
}

// probe creates a MESH_EXTERNAL ServiceEntry for host name (no dots: a
// cluster name until then), posts a review of a VirtualService routing to it
// until serve denies it, deletes the ServiceEntry and posts the review until
// serve admits it again. It returns both times, from the API server's
// answers.
func (p *prober) probe(ctx context.Context, name string, timeout time.Duration) (created, deleted time.Duration, err error) {
	r := &review{name: "VS " + name, path: "/validate", object: []byte(fmt.Sprintf(`
kind: VirtualService
metadata: {name: %[1]s}
spec:
  hosts: [%[1]s]
  tcp:
  - route:
    - destination: {host: %[1]s, port: {number: 3306}}
`, name))}
	if err := r.build(); err != nil {
		return 0, 0, err
	}
	c := p.tg.clients[0]
	if got, err := p.answer(ctx, c, r); err != nil || got != allowed {
		return 0, 0, fmt.Errorf("%s before its ServiceEntry: %s %v, want allowed", r.name, got, err)
	}
	ns := churnNamespace(0)
	if _, err := p.ses.Namespace(ns).Create(ctx, serviceEntry(ns, name, name), metav1.CreateOptions{}); err != nil {
		return 0, 0, fmt.Errorf("creating ServiceEntry %s: %w", name, err)
	}
	if created, err = p.until(ctx, c, r, denied, timeout); err != nil {
		return 0, 0, err
	}
	if err := p.ses.Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return 0, 0, fmt.Errorf("deleting ServiceEntry %s: %w", name, err)
	}
	if deleted, err = p.until(ctx, c, r, allowed, timeout); err != nil {
		return 0, 0, err
	}
	return created, deleted, nil
}

// until posts r every millisecond until serve answers want, and returns how
// long that took.
func (p *prober) until(ctx context.Context, c *http.Client, r *review, want outcome, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		got, err := p.answer(ctx, c, r)
		if err == nil && got == want {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s: still %s (%v) %s after the change, want %s", r.name, got, err, timeout, want)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// answer posts r and returns serve's decision.
func (p *prober) answer(ctx context.Context, c *http.Client, r *review) (outcome, error) {
	body, uid := r.newBody()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.tg.url+r.path, bytes.NewReader(body))
	if err != nil {
		return allowed, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return allowed, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return allowed, fmt.Errorf("%s: %v", resp.Status, err)
	}
	if verify(data, uid, denied) == "" {
		return denied, nil
	}
	if msg := verify(data, uid, allowed); msg != "" {
		return allowed, fmt.Errorf("unexpected answer: %s", msg)
	}
	return allowed, nil
}

// rssSamples are VmRSS samples, in bytes.
type rssSamples []int64

func (s rssSamples) sorted() []int64 { return slices.Sorted(slices.Values(s)) }

func (s rssSamples) min() int64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Min(s)
}

func (s rssSamples) max() int64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

func (s rssSamples) median() int64 {
	if len(s) == 0 {
		return 0
	}
	return s.sorted()[len(s)/2]
}

// sampleRSS samples the server's VmRSS every interval until the returned
// function is called, which returns the samples.
func sampleRSS(s *server, interval time.Duration) func() rssSamples {
	stop, done := make(chan struct{}), make(chan rssSamples, 1)
	go func() {
		var out rssSamples
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v, err := s.rss(); err == nil {
				out = append(out, v)
			}
			select {
			case <-stop:
				done <- out
				return
			case <-t.C:
			}
		}
	}()
	return func() rssSamples { close(stop); return <-done }
}

// metricValue is the sum of a metric's series, or absent.
type metricValue struct {
	v     float64
	found bool
}

func (m metricValue) String() string {
	if !m.found {
		return "n/a"
	}
	return strconv.FormatFloat(m.v, 'f', -1, 64)
}

// delta prints the growth of a counter, or n/a when serve does not have it.
func delta(name string, a, b metricValue) string {
	if !a.found || !b.found {
		return fmt.Sprintf("n/a (serve has no %s)", name)
	}
	return fmt.Sprintf("%g (%s)", b.v-a.v, name)
}

// scrapeMetric reads the sum of the series of the metric name from serve's
// /metrics.
func scrapeMetric(ctx context.Context, addr, name string) metricValue {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return metricValue{}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return metricValue{}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return metricValue{}
	}
	return parseMetric(data, name)
}

// parseMetric sums the series of the metric name in Prometheus' text format.
func parseMetric(data []byte, name string) metricValue {
	var m metricValue
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			m.v += v
			m.found = true
		}
	}
	return m
}

// cpuTimes is the busy time of a set of CPUs, from /proc/stat.
type cpuTimes struct {
	busy time.Duration
	ok   bool
}

func (a cpuTimes) sub(b cpuTimes) cpuTimes { return cpuTimes{busy: a.busy - b.busy, ok: a.ok && b.ok} }

// readCPUTimes reads the time the CPUs of list (as taskset takes it: 1,3
// or 0-2) spent on anything but idle and iowait, all processes together,
// and the time the hypervisor gave them to others (steal).
func readCPUTimes(list string) cpuTimes {
	want := map[string]bool{}
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, found := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return cpuTimes{}
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				return cpuTimes{}
			}
		}
		for i := a; i <= b; i++ {
			want["cpu"+strconv.Itoa(i)] = true
		}
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	return parseCPUTimes(string(data), want)
}

// parseCPUTimes sums the busy ticks of the cpuN lines of /proc/stat's text
// that want names; not ok unless every one is there.
func parseCPUTimes(data string, want map[string]bool) cpuTimes {
	var ticks int64
	seen := 0
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 8 || !want[f[0]] {
			continue
		}
		seen++
		for i, v := range f[1:] {
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return cpuTimes{}
			}
			// user nice system (idle iowait) irq softirq steal; guest
			// time is in user's.
			if i <= 7 {
				ticks += n
			}
		}
	}
	if seen != len(want) {
		return cpuTimes{}
	}
	// USER_HZ is 100 on Linux.
	return cpuTimes{busy: time.Duration(ticks) * 10 * time.Millisecond, ok: true}
}
