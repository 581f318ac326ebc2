package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// defaultEngine is the engine of the embedded policy pack and the default
// configuration.
func defaultEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.New(context.Background(), engine.Options{Config: config.Default()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// logLines collects log entries, one string each.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{})
}

func (l *logLines) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// stack is the webhook endpoints as served (endpoints: limitBody,
// controller-runtime's admission.Webhook, the handlers) behind a real TLS
// HTTP server.
type stack struct {
	url    string
	client *http.Client
	reg    *prometheus.Registry
	log    *logLines
	deps   handler.Deps
}

type stackOptions struct {
	engine guard.Engine
	// limit bounds the requests evaluated at once (0: no bound).
	limit             int
	evaluationTimeout time.Duration
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	s := &stack{reg: prometheus.NewRegistry(), log: &logLines{}}
	if o.engine == nil {
		o.engine = defaultEngine(t)
	}
	s.deps = handler.Deps{
		Engine:            func() guard.Engine { return o.engine },
		Metrics:           metrics.New(s.reg),
		Log:               s.log.logger(),
		EvaluationTimeout: o.evaluationTimeout,
	}
	if o.limit > 0 {
		s.deps.Limit = handler.NewLimit(o.limit)
	}
	mutate, validate := endpoints(s.deps, 0)
	mux := http.NewServeMux()
	mux.Handle(MutatePath, mutate)
	mux.Handle(ValidatePath, validate)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	s.url, s.client = srv.URL, srv.Client()
	return s
}

// reply is an answer as the API server reads it.
type reply struct {
	status     int
	retryAfter string
	raw        []byte
	review     struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Response   *struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Status  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
}

func (r *reply) code() int {
	if r.review.Response == nil || r.review.Response.Status == nil {
		return 0
	}
	return r.review.Response.Status.Code
}

// decided says r is a decision of the policies (allowed, or denied with
// code 403), not an error or an overload.
func (r *reply) decided() bool {
	return r.status == http.StatusOK && r.review.Response != nil && (r.review.Response.Allowed || r.code() == http.StatusForbidden)
}

func (r *reply) message() string {
	if r.review.Response == nil || r.review.Response.Status == nil {
		return ""
	}
	return r.review.Response.Status.Message
}

// post sends body to path (with its query) and reads the answer, which must
// be an AdmissionReview with a response.
func (s *stack) post(t *testing.T, path, body string) *reply {
	t.Helper()
	res, err := s.client.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := &reply{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After")}
	if r.raw, err = io.ReadAll(res.Body); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(r.raw, &r.review); err != nil || r.review.Kind != "AdmissionReview" || r.review.Response == nil {
		t.Fatalf("HTTP %d: the answer is not an AdmissionReview with a response (%v):\n%s", r.status, err, r.raw)
	}
	return r
}

func (s *stack) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// faulty is an engine that panics or blocks on chosen objects and counts
// evaluations; the others go to the real engine.
type faulty struct {
	*engine.Engine
	// panicOn maps an object name to the step that panics: input or
	// evaluate.
	panicOn map[string]string
	// panicConfig makes Config panic (the handler reads it first).
	panicConfig atomic.Bool
	// block: evaluations of objects named "slow" signal started and wait
	// for release or for the end of their context, as the evaluators
	// stop.
	started chan string
	release chan struct{}
	evals   atomic.Int64
	// names maps the inputs Input made to their objects' names.
	names sync.Map
}

func (f *faulty) Config() *config.Config {
	if f.panicConfig.Load() {
		// A nil map write, as a real bug would.
		var m map[string]int
		m["config"]++
	}
	return f.Engine.Config()
}

func (f *faulty) Input(r engine.Request) (*engine.Prepared, error) {
	if f.panicOn[r.Name] == "input" {
		panic("input conversion of " + r.Name)
	}
	p, err := f.Engine.Input(r)
	if p != nil {
		f.names.Store(p, r.Name)
	}
	return p, err
}

func (f *faulty) Intents(ctx context.Context, in *engine.Prepared) ([]engine.Intent, error) {
	f.evals.Add(1)
	return f.Engine.Intents(ctx, in)
}

func (f *faulty) Violations(ctx context.Context, in *engine.Prepared) ([]engine.Violation, error) {
	f.evals.Add(1)
	v, _ := f.names.Load(in)
	name, _ := v.(string)
	if f.panicOn[name] == "evaluate" {
		panic("evaluation of " + name)
	}
	if strings.HasPrefix(name, "slow") {
		f.started <- name
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.Engine.Violations(ctx, in)
}
