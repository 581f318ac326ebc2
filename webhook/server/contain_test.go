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
// and counted by where it happened; the server goes on serving, and a
// panicking request gives its place back: the limit of requests evaluated at
// once stays what it was.
func TestPanicsAreContained(t *testing.T) {
	const limit = 2
	e := &faulty{
		Engine:  defaultEngine(t),
		panicOn: map[string]string{"bad-input": "input", "bad-eval": "evaluate"},
		started: make(chan string),
		release: make(chan struct{}),
	}
	s := newStack(t, stackOptions{engine: e, limit: limit})
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
			// More panics than the limit: every place is taken and
			// given back several times.
			for i := range 2 * limit {
				r := s.post(t, tc.path, reviewOf(tc.name))
				if r.status != http.StatusOK || r.review.Response.UID != "uid-"+tc.name || r.review.Response.Allowed || r.code() != http.StatusInternalServerError {
					t.Fatalf("%d: want HTTP 200 with an error (code 500) for uid-%s, got HTTP %d:\n%s", i, tc.name, r.status, r.raw)
				}
				if r.message() != tc.message {
					t.Errorf("message %q, want %q", r.message(), tc.message)
				}
			}
			e.panicConfig.Store(false)
			if got := s.counter(t, "egress_guard_panics_total", "where", tc.where) - before; got != 2*limit {
				t.Errorf("egress_guard_panics_total{where=%q} moved by %v, want %d", tc.where, got, 2*limit)
			}
			lines := s.log.take()
			if len(lines) != 2*limit {
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

	// As many slow evaluations as the limit run at once, and one more is
	// refused.
	slow := occupy(t, s, e, limit)
	if r := s.post(t, ValidatePath, validReview); r.status != http.StatusTooManyRequests {
		t.Errorf("beyond the limit: HTTP %d, want 429:\n%s", r.status, r.raw)
	}
	close(e.release)
	for i, r := range slow() {
		if !r.decided() {
			t.Errorf("slow request %d: HTTP %d %s", i, r.status, r.raw)
		}
	}
}

// occupy posts n reviews of slow objects and waits until their evaluations
// run; the function it returns waits for their answers.
func occupy(t *testing.T, s *stack, e *faulty, n int) func() []*reply {
	t.Helper()
	var wg sync.WaitGroup
	replies := make([]*reply, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = s.post(t, ValidatePath, reviewOf("slow-"+string(rune('a'+i))))
		}()
	}
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-e.started:
		case <-timeout:
			t.Fatalf("fewer than %d evaluations run at once", n)
		}
	}
	return func() []*reply { wg.Wait(); return replies }
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

// The requests evaluated at once are bounded: with as many slow evaluations
// as the limit running, a request is refused at once with HTTP 429 and
// Retry-After, which makes the API server retry, then apply the
// failurePolicy; the slow ones are answered when they end.
func TestRequestsBeyondTheLimitAreRefused(t *testing.T) {
	const limit = 2
	e := &faulty{Engine: defaultEngine(t), started: make(chan string), release: make(chan struct{})}
	s := newStack(t, stackOptions{engine: e, limit: limit})
	slow := occupy(t, s, e, limit)
	start := time.Now()
	for _, path := range []string{ValidatePath, MutatePath} {
		r := s.post(t, path, reviewOf("fast"))
		if r.status != http.StatusTooManyRequests || r.code() != http.StatusTooManyRequests || r.retryAfter != "1" || r.review.Response.Allowed {
			t.Errorf("%s: HTTP %d (status code %d, Retry-After %q), want 429 with Retry-After 1:\n%s", path, r.status, r.code(), r.retryAfter, r.raw)
		}
		if want := "egress-guard: ServiceEntry default/fast: 2 admission requests are being evaluated, as many as this replica takes at once"; r.message() != want {
			t.Errorf("message %q, want %q", r.message(), want)
		}
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("refused after %s", took)
	}
	close(e.release)
	for i, r := range slow() {
		if !r.decided() {
			t.Errorf("slow request %d: HTTP %d %s", i, r.status, r.raw)
		}
	}
	if got := s.counter(t, "egress_guard_admission_requests_total", "decision", "overloaded"); got != 2 {
		t.Errorf("%v requests counted as overloaded, want 2", got)
	}
	if r := s.post(t, ValidatePath, validReview); !evaluated(r) {
		t.Errorf("once the slow ones ended: HTTP %d %s", r.status, r.raw)
	}
}

// An evaluation that stops at its deadline (the evaluators check their
// context) is answered then with an error for the object, not an overload;
// the deadline is the API server's timeout less a margin, or the evaluation
// timeout.
func TestEvaluationPastTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		evalTO      time.Duration
	}{
		{"deadline from the API server's timeout", "?timeout=1s", 0},
		{"deadline from the evaluation timeout", "", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &faulty{Engine: defaultEngine(t), started: make(chan string, 1), release: make(chan struct{})}
			s := newStack(t, stackOptions{engine: e, limit: 1, evaluationTimeout: tc.evalTO})
			start := time.Now()
			r := s.post(t, ValidatePath+tc.query, reviewOf("slow"))
			if r.status != http.StatusOK || r.review.Response.Allowed || r.code() != http.StatusInternalServerError || r.review.Response.UID != "uid-slow" {
				t.Errorf("want HTTP 200 with an error (code 500); got HTTP %d:\n%s", r.status, r.raw)
			}
			if want := "egress-guard: ServiceEntry default/slow: the evaluation did not finish before the request's deadline: context deadline exceeded"; r.message() != want {
				t.Errorf("message %q, want %q", r.message(), want)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("answered after %s", took)
			}
			// Its place is free again.
			if r := s.post(t, ValidatePath, validReview); !evaluated(r) {
				t.Errorf("after the slow one: HTTP %d %s", r.status, r.raw)
			}
			if got := s.counter(t, "egress_guard_admission_requests_total", "decision", "overloaded"); got != 0 {
				t.Errorf("%v requests counted as overloaded, want 0", got)
			}
		})
	}
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
			// One request at a time: the second is evaluated (and stopped
			// in turn) only if the first gave its place back.
			s := newStack(t, stackOptions{engine: e, limit: 1, evaluationTimeout: 2 * time.Second})
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
