package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// A panic in one request's work is that request's error answer (HTTP 200,
// status code 500, a message naming the object), logged once with its stack
// and counted by where it happened; the server goes on serving, and the pool
// keeps its workers.
func TestPanicsAreContained(t *testing.T) {
	const workers = 2
	e := &faulty{
		Engine:  defaultEngine(t),
		panicOn: map[string]string{"bad-input": "input", "bad-eval": "evaluate"},
		started: make(chan string),
		release: make(chan struct{}),
	}
	s := newStack(t, stackOptions{engine: e, workers: workers, queue: 4})
	for _, tc := range []struct {
		name, path, where, message string
		config                     bool
	}{
		{name: "bad-input", path: ValidatePath, where: "input", message: "egress-guard: ServiceEntry default/bad-input: internal error: input conversion of bad-input"},
		{name: "bad-input", path: MutatePath, where: "input", message: "egress-guard: ServiceEntry default/bad-input: internal error: input conversion of bad-input"},
		{name: "bad-eval", path: ValidatePath, where: "evaluate", message: "egress-guard: ServiceEntry default/bad-eval: internal error: evaluation of bad-eval"},
		{name: "any", path: ValidatePath, where: "handler", config: true, message: "egress-guard: ServiceEntry default/any: internal error: assignment to entry in nil map"},
		{name: "any", path: MutatePath, where: "handler", config: true, message: "egress-guard: ServiceEntry default/any: internal error: assignment to entry in nil map"},
	} {
		t.Run(tc.where+tc.path, func(t *testing.T) {
			before := s.counter(t, "egress_guard_panics_total", "where", tc.where)
			s.log.take()
			e.panicConfig.Store(tc.config)
			// More panics than workers: each worker survives several.
			for i := range 2 * workers {
				r := s.post(t, tc.path, reviewOf(tc.name))
				if r.status != http.StatusOK || r.review.Response.UID != "uid-"+tc.name || r.review.Response.Allowed || r.code() != http.StatusInternalServerError {
					t.Fatalf("%d: want HTTP 200 with an error (code 500) for uid-%s, got HTTP %d:\n%s", i, tc.name, r.status, r.raw)
				}
				if r.message() != tc.message {
					t.Errorf("message %q, want %q", r.message(), tc.message)
				}
			}
			e.panicConfig.Store(false)
			if got := s.counter(t, "egress_guard_panics_total", "where", tc.where) - before; got != 2*workers {
				t.Errorf("egress_guard_panics_total{where=%q} moved by %v, want %d", tc.where, got, 2*workers)
			}
			lines := s.log.take()
			if len(lines) != 2*workers {
				t.Fatalf("want one log entry per panic, got %d: %q", len(lines), lines)
			}
			for _, l := range lines {
				if !strings.Contains(l, "panic") || !strings.Contains(l, `"where"="`+tc.where+`"`) || !strings.Contains(l, "goroutine ") || !strings.Contains(l, "stack_test.go") {
					t.Errorf("log entry %q: want the panic, where and the stack down to the panicking code", l)
				}
			}
			// Still serving, and answering right.
			if r := s.post(t, tc.path, validReview); !evaluated(r) {
				t.Errorf("after the panics a good review: HTTP %d\n%s", r.status, r.raw)
			}
		})
	}

	// The pool still has all its workers: as many slow evaluations as
	// workers run at once.
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.post(t, ValidatePath, reviewOf("slow-"+string(rune('a'+i))))
		}()
	}
	timeout := time.After(30 * time.Second)
	for range workers {
		select {
		case <-e.started:
		case <-timeout:
			t.Fatal("fewer evaluations run at once than the pool had workers")
		}
	}
	close(e.release)
	wg.Wait()
}

// evaluated says r is the engine's answer for validReview under the default
// configuration: test.com is not allowed.
func evaluated(r *reply) bool {
	return r.status == http.StatusOK && r.review.Response.UID == "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01" &&
		(r.review.Response.Allowed || strings.Contains(r.message(), `external host "test.com" is not allowed`))
}

// A panic in the HTTP layer (here, in the handler behind limitBody) is also
// the request's error answer for its uid, logged and counted.
func TestPanicInTheHTTPLayer(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := &logLines{}
	front := frontOptions{metrics: metrics.New(reg), log: log.logger()}
	srv := httptest.NewTLSServer(limitBody(front, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Half-Done", "yes")
		_, _ = w.Write([]byte(`{"half":`))
		panic("broken writer")
	})))
	t.Cleanup(srv.Close)
	s := &stack{url: srv.URL, client: srv.Client(), reg: reg, log: log}
	r := s.post(t, ValidatePath, strings.Replace(validReview, `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1))
	if r.status != http.StatusOK || r.review.Response.UID != "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01" || r.review.Response.Allowed || r.code() != http.StatusInternalServerError || r.review.APIVersion != "admission.k8s.io/v1beta1" {
		t.Fatalf("want HTTP 200, an error (code 500) for the uid, in the review's version; got HTTP %d:\n%s", r.status, r.raw)
	}
	if want := "egress-guard: ServiceEntry default/test-com: internal error: broken writer"; r.message() != want {
		t.Errorf("message %q, want %q", r.message(), want)
	}
	if got := s.counter(t, "egress_guard_panics_total", "where", "http"); got != 1 {
		t.Errorf("egress_guard_panics_total{where=http} = %v, want 1", got)
	}
	if lines := log.take(); len(lines) != 1 || !strings.Contains(lines[0], "goroutine ") {
		t.Errorf("want one log entry with the stack, got %q", lines)
	}
}

// The evaluation is bounded: with every worker stuck on a slow job, a request
// is refused at once when the queue is full (HTTP 429 with Retry-After), and
// answered within its deadline when it waits (HTTP 503); a request whose own
// evaluation overruns its deadline gets an error answer at the deadline.
// These statuses make the API server retry, then apply the failurePolicy.
func TestSlowEvaluationsDoNotStarveThePool(t *testing.T) {
	for _, tc := range []struct {
		name   string
		queue  int
		query  string
		status int
		evalTO time.Duration
	}{
		{"queue full", 0, "", http.StatusTooManyRequests, 0},
		{"deadline from the API server's timeout", 1, "?timeout=1s", http.StatusServiceUnavailable, 0},
		{"deadline from the evaluation timeout", 1, "", http.StatusServiceUnavailable, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const workers = 2
			e := &faulty{Engine: defaultEngine(t), started: make(chan string), release: make(chan struct{})}
			s := newStack(t, stackOptions{engine: e, workers: workers, queue: tc.queue, evaluationTimeout: tc.evalTO})
			var wg sync.WaitGroup
			slow := make([]*reply, workers)
			for i := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					slow[i] = s.post(t, ValidatePath, reviewOf("slow-"+string(rune('a'+i))))
				}()
			}
			for range workers {
				<-e.started
			}
			start := time.Now()
			r := s.post(t, ValidatePath+tc.query, reviewOf("fast"))
			took := time.Since(start)
			if r.status != tc.status || r.code() != tc.status || r.retryAfter != "1" || r.review.Response.Allowed {
				t.Errorf("HTTP %d (status code %d, Retry-After %q), want %d with Retry-After 1:\n%s", r.status, r.code(), r.retryAfter, tc.status, r.raw)
			}
			if !strings.Contains(r.message(), "evaluation worker") {
				t.Errorf("message %q does not say the workers are busy", r.message())
			}
			if took > 20*time.Second {
				t.Errorf("answered after %s", took)
			}
			close(e.release)
			wg.Wait()
			for i, r := range slow {
				// The slow ones had the default deadline (8s) at most.
				if r.status != http.StatusOK {
					t.Errorf("slow request %d: HTTP %d %s", i, r.status, r.raw)
				}
			}
			if got := s.counter(t, "egress_guard_admission_requests_total", "decision", "overloaded"); got != 1 {
				t.Errorf("%v requests counted as overloaded, want 1", got)
			}
		})
	}

	t.Run("own evaluation past the deadline", func(t *testing.T) {
		e := &faulty{Engine: defaultEngine(t), started: make(chan string, 1), release: make(chan struct{})}
		s := newStack(t, stackOptions{engine: e, workers: 1, queue: 1})
		r := s.post(t, ValidatePath+"?timeout=1s", reviewOf("slow"))
		// The job ignores its context: the answer comes at the deadline
		// anyway, and it is an error for the object, not an overload.
		if r.status != http.StatusOK || r.review.Response.Allowed || r.code() != http.StatusInternalServerError || r.review.Response.UID != "uid-slow" {
			t.Errorf("want HTTP 200 with an error (code 500); got HTTP %d:\n%s", r.status, r.raw)
		}
		if want := "egress-guard: ServiceEntry default/slow: the evaluation did not finish before the request's deadline: context deadline exceeded"; r.message() != want {
			t.Errorf("message %q, want %q", r.message(), want)
		}
		// The stuck job holds its worker until it ends; then the pool
		// serves again.
		close(e.release)
		if r := s.post(t, ValidatePath, validReview); !evaluated(r) {
			t.Errorf("after the slow job ended: HTTP %d %s", r.status, r.raw)
		}
	})
}

// A policy that evaluates for too long is stopped by the request's deadline:
// the evaluator checks its context. A real Rego policy, through the whole
// stack; the worker is free again afterwards.
func TestSlowPolicyStoppedAtTheDeadline(t *testing.T) {
	dir := t.TempDir()
	policy := `package egressguard.rules.slow

_numbers := numbers.range(1, 100000)

deny contains {"code": "EGR990", "message": "never"} if {
	some i in _numbers
	some j in _numbers
	i + j < 0
}
`
	if err := os.WriteFile(filepath.Join(dir, "slow.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, evaluator := range engine.Evaluators {
		t.Run(evaluator, func(t *testing.T) {
			e, err := engine.New(context.Background(), engine.Options{Config: config.Default(), PolicyDirs: []string{dir}, Evaluator: evaluator})
			if err != nil {
				t.Fatal(err)
			}
			// The second request waits for the only worker for as long as
			// its deadline: it gets the worker (and is stopped in turn) only
			// if the first evaluation stopped soon after its deadline.
			s := newStack(t, stackOptions{engine: e, workers: 1, queue: 1, evaluationTimeout: 2 * time.Second})
			for range 2 {
				start := time.Now()
				r := s.post(t, ValidatePath, validReview)
				if r.status != http.StatusOK || r.review.Response.Allowed || r.code() != http.StatusInternalServerError {
					t.Fatalf("want HTTP 200 with an error (code 500); got HTTP %d:\n%s", r.status, r.raw)
				}
				if !strings.Contains(r.message(), "egress-guard: ServiceEntry default/test-com: the evaluation did not finish before the request's deadline") {
					t.Errorf("message %q", r.message())
				}
				if took := time.Since(start); took > 20*time.Second {
					t.Errorf("answered after %s", took)
				}
			}
		})
	}
}
