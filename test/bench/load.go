package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// target is a server under load with the answers it is expected to give.
type target struct {
	*server
	clients []*http.Client // one keep-alive connection (pool) per worker
	expect  func(*review) outcome
}

// tally is what a run observed.
type tally struct {
	requests  int
	errors    int
	lat       []time.Duration // sorted after finish
	elapsed   time.Duration
	serverCPU time.Duration
	selfCPU   time.Duration
	protos    map[string]int
	checked   int
	wrong     map[string]int // "review: difference" -> count
	firstErr  string
}

func newTally() *tally { return &tally{protos: map[string]int{}, wrong: map[string]int{}} }

func (t *tally) merge(o *tally) {
	t.requests += o.requests
	t.elapsed += o.elapsed
	t.serverCPU += o.serverCPU
	t.selfCPU += o.selfCPU
	t.errors += o.errors
	t.lat = append(t.lat, o.lat...)
	t.checked += o.checked
	for k, v := range o.protos {
		t.protos[k] += v
	}
	for k, v := range o.wrong {
		t.wrong[k] += v
	}
	if t.firstErr == "" {
		t.firstErr = o.firstErr
	}
}

func (t *tally) finish() { slices.Sort(t.lat) }

// pct is the q-quantile of the sorted latencies.
func (t *tally) pct(q float64) time.Duration {
	if len(t.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(t.lat)))) - 1
	return t.lat[max(0, min(i, len(t.lat)-1))]
}

func (t *tally) rate() float64 {
	if t.elapsed <= 0 {
		return 0
	}
	return float64(t.requests) / t.elapsed.Seconds()
}

// cpuPerReq is the server's CPU time per request, in µs.
func (t *tally) cpuPerReq() float64 {
	if t.requests == 0 {
		return 0
	}
	return float64(t.serverCPU.Microseconds()) / float64(t.requests)
}

// send posts one review and records it. Every sampleEvery-th request of a
// worker has its answer checked against the expectation.
func (tg *target) send(ctx context.Context, c *http.Client, r *review, check bool, t *tally) (ok bool) {
	body, uid := r.newBody()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tg.url+r.path, bytes.NewReader(body))
	if err != nil {
		t.fail(err.Error())
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.fail(err.Error())
		return false
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.protos[resp.Proto]++
	if err != nil || resp.StatusCode != http.StatusOK {
		t.fail(fmt.Sprintf("%s %s: %s %v", r.name, r.path, resp.Status, err))
		return false
	}
	t.requests++
	if check {
		t.checked++
		if msg := verify(data, uid, tg.expect(r)); msg != "" {
			t.wrong[r.name+" "+r.path+": "+msg]++
		}
	}
	return true
}

func (t *tally) fail(msg string) {
	t.errors++
	if t.firstErr == "" {
		t.firstErr = msg
	}
}

// closedLoop runs one worker per client, each sending its next request as
// soon as the previous one is answered, for d (or until maxReq requests).
func (tg *target) closedLoop(ctx context.Context, rs []*review, d time.Duration, maxReq int64, record bool, sampleEvery int) (*tally, error) {
	if err := tg.alive(); err != nil {
		return nil, err
	}
	mark, err := tg.mark()
	if err != nil {
		return nil, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total = newTally()
		left  atomic.Int64
	)
	left.Store(maxReq)
	start := time.Now()
	end := start.Add(d)
	for w, c := range tg.clients {
		wg.Go(func() {
			t := newTally()
			if record {
				t.lat = make([]time.Duration, 0, 1<<14)
			}
			p := newPicker(rs, uint64(w)+uint64(start.UnixNano()))
			for n := 0; time.Now().Before(end) && left.Add(-1) >= 0 && ctx.Err() == nil; n++ {
				r := p.next()
				t0 := time.Now()
				if tg.send(ctx, c, r, sampleEvery > 0 && n%sampleEvery == 0, t) && record {
					t.lat = append(t.lat, time.Since(t0))
				}
			}
			mu.Lock()
			total.merge(t)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	if err := tg.charge(total, mark); err != nil {
		return nil, err
	}
	total.finish()
	return total, tg.alive()
}

// openLoop sends rate requests per second for d, each at its intended time
// whatever happened to the ones before (no coordinated omission): latency
// counts from the intended send time, so a stalled server is charged for the
// requests queued behind the stall.
func (tg *target) openLoop(ctx context.Context, rs []*review, rate int, d time.Duration, sampleEvery int) (*tally, error) {
	if err := tg.alive(); err != nil {
		return nil, err
	}
	n := int(int64(rate) * int64(d) / int64(time.Second))
	if n <= 0 {
		return nil, fmt.Errorf("open loop: no requests at %d req/s for %s", rate, d)
	}
	interval := time.Second / time.Duration(rate)
	mark, err := tg.mark()
	if err != nil {
		return nil, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total = newTally()
		lat   = make([]time.Duration, n)
		okAt  = make([]bool, n)
		last  atomic.Int64 // latest completion, ns since start
		// At most this many requests in flight; beyond it the scheduler
		// waits, and the wait is charged to the requests' latency.
		inflight = make(chan struct{}, 4096)
	)
	p := newPicker(rs, uint64(time.Now().UnixNano()))
	start := time.Now().Add(10 * time.Millisecond)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if w := time.Until(intended); w > 0 {
			time.Sleep(w)
		}
		inflight <- struct{}{}
		r, c := p.next(), tg.clients[i%len(tg.clients)]
		wg.Go(func() {
			defer func() { <-inflight }()
			t := newTally()
			okAt[i] = tg.send(ctx, c, r, sampleEvery > 0 && i%sampleEvery == 0, t)
			done := time.Since(start)
			lat[i] = time.Since(intended)
			for {
				prev := last.Load()
				if int64(done) <= prev || last.CompareAndSwap(prev, int64(done)) {
					break
				}
			}
			mu.Lock()
			total.merge(t)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Duration(last.Load())
	for i, ok := range okAt {
		if ok {
			total.lat = append(total.lat, lat[i])
		}
	}
	if err := tg.charge(total, mark); err != nil {
		return nil, err
	}
	total.finish()
	return total, tg.alive()
}

// rssSeries is a server's resident memory at every 10% of a long run.
type rssSeries struct {
	at       []int64 // requests sent when sampled
	rss      []int64 // bytes
	requests int
	errors   int
	elapsed  time.Duration
	firstErr string
	wrong    map[string]int
	checked  int
	// incomplete: the time limit stopped the run before the end.
	incomplete bool
}

// growth is the RSS growth from the 20% mark to the end.
func (s *rssSeries) growth() float64 {
	if len(s.rss) < 4 || s.rss[2] == 0 {
		return math.NaN()
	}
	return float64(s.rss[len(s.rss)-1]-s.rss[2]) / float64(s.rss[2])
}

// rssRun sends total requests to each target, in ten steps interleaved
// across the targets so that both see the same machine, and samples each
// target's RSS before the run and after every step. Past the time limit it
// stops and returns the samples taken, marked incomplete.
func rssRun(ctx context.Context, rs []*review, tgs []*target, total int64, timeout time.Duration, sampleEvery int) ([]*rssSeries, error) {
	out := make([]*rssSeries, len(tgs))
	for i, tg := range tgs {
		v, err := tg.rss()
		if err != nil {
			return nil, err
		}
		out[i] = &rssSeries{at: []int64{0}, rss: []int64{v}, wrong: map[string]int{}}
	}
	deadline := time.Now().Add(timeout)
	step := total / 10
	for k := 1; k <= 10; k++ {
		count := step
		if k == 10 {
			count = total - 9*step
		}
		for i, tg := range tgs {
			left := time.Until(deadline)
			if left <= 0 {
				for _, s := range out {
					s.incomplete = true
				}
				return out, nil
			}
			t, err := tg.closedLoop(ctx, rs, left, count, false, sampleEvery)
			if err != nil {
				return out, err
			}
			s := out[i]
			if t.requests+t.errors < int(count) {
				s.incomplete = true // stopped by the time limit
			}
			s.requests += t.requests
			s.errors += t.errors
			s.elapsed += t.elapsed
			s.checked += t.checked
			for m, c := range t.wrong {
				s.wrong[m] += c
			}
			if s.firstErr == "" {
				s.firstErr = t.firstErr
			}
			v, err := tg.rss()
			if err != nil {
				return out, err
			}
			s.at = append(s.at, s.at[len(s.at)-1]+int64(t.requests+t.errors))
			s.rss = append(s.rss, v)
		}
	}
	return out, nil
}

// sortedKeys returns m's keys, most frequent first.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

// cpuMark is the server's and the bench's own CPU time when a run starts.
type cpuMark struct{ server, self time.Duration }

func (tg *target) mark() (cpuMark, error) {
	server, err := tg.cpu()
	return cpuMark{server: server, self: selfCPU()}, err
}

// charge records the CPU time spent since m in total.
func (tg *target) charge(total *tally, m cpuMark) error {
	server, err := tg.cpu()
	if err != nil {
		return err
	}
	total.serverCPU = server - m.server
	total.selfCPU = selfCPU() - m.self
	return nil
}
