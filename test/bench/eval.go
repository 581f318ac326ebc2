package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/metrics"
	webhookserver "github.com/egress-guard/egress-guard/webhook/server"
)

// evalResult is the in-process timing of the handlers' decisions.
type evalResult struct {
	p50, p99 float64 // µs, Handle
	// webhookP50 and webhookP99 are the same requests through
	// controller-runtime's admission.Webhook: the review decoded from its
	// body, Handle, the answer encoded.
	webhookP50, webhookP99 float64
	byKind                 string // Handle p50 per request of the mix
}

// handlerEval times the admission handlers on the request mix as serve runs
// them, one request at a time: Handle of the mutating or validating handler
// (the request's path), on an admission.Request decoded from the review as
// controller-runtime decodes it, within the limit of concurrent requests
// serve sets. A decision is the whole of the handler's work: the typed
// decoding and checks of the object, the input, the queries, the mutators
// and the patch, metrics. It then times the same requests through
// admission.Webhook (review decoding and answer encoding added). The answers
// are checked against the expectations.
func handlerEval(ctx context.Context, rs []*review, n, gcPercent int, profile string) (*evalResult, error) {
	cfg, err := config.Parse([]byte(benchConfig))
	if err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	e, err := engine.New(ctx, engine.Options{Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("policy engine: %w", err)
	}
	// With the servers' GC target, as the server evaluates.
	defer debug.SetGCPercent(debug.SetGCPercent(gcPercent))
	deps := handler.Deps{
		Engine:  func() guard.Engine { return e },
		Metrics: metrics.New(prometheus.NewRegistry()),
		Log:     logr.Discard(),
		Limit:   handler.NewLimit(webhookserver.DefaultConcurrentPerCPU * runtime.GOMAXPROCS(0)),
	}
	handlers := map[string]admission.Handler{"/mutate": &handler.Mutating{Deps: deps}, "/validate": &handler.Validating{Deps: deps}}
	hooks := map[string]*admission.Webhook{}
	for path, h := range handlers {
		hooks[path] = &admission.Webhook{Handler: h, LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return logr.Discard() }}
	}

	// The requests, decoded once as controller-runtime's webhook decodes
	// a review: the universal deserializer of a scheme with admission/v1.
	scheme := k8sruntime.NewScheme()
	if err := admissionv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	reqs := map[*review]admission.Request{}
	for _, r := range rs {
		var ar admissionv1.AdmissionReview
		if _, _, err := decoder.Decode(r.body, nil, &ar); err != nil {
			return nil, fmt.Errorf("%s: decoding the review: %w", r.name, err)
		}
		if ar.Request == nil {
			return nil, fmt.Errorf("%s: no request in the review", r.name)
		}
		reqs[r] = admission.Request{AdmissionRequest: *ar.Request}
	}
	decide := func(r *review) admission.Response { return handlers[r.path].Handle(ctx, reqs[r]) }

	wrong := map[string]int{}
	for _, r := range rs {
		resp := decide(r)
		got := allowed
		switch {
		case !resp.Allowed:
			got = denied
		case len(resp.Patches) > 0 || len(resp.Patch) > 0:
			got = patched
		}
		if got != r.want {
			msg := ""
			if resp.Result != nil {
				msg = resp.Result.Message
			}
			wrong[fmt.Sprintf("%s %s: the handler answers %s, want %s %s", r.name, r.path, got, r.want, msg)]++
		}
	}
	warnWrong("handlers", "in process", len(rs), wrong)

	p := newPicker(rs, 1)
	for range min(n, 2000) { // warm up
		decide(p.next())
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
	all := make([]time.Duration, 0, n)
	by := map[*review][]time.Duration{}
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := p.next()
		t0 := time.Now()
		decide(r)
		d := time.Since(t0)
		all = append(all, d)
		by[r] = append(by[r], d)
	}
	res := &evalResult{p50: quantile(all, 0.50), p99: quantile(all, 0.99)}
	var parts []string
	for _, r := range rs {
		if len(by[r]) > 0 {
			parts = append(parts, fmt.Sprintf("%s%s %.0f", r.name, map[string]string{"/mutate": " (m)", "/validate": ""}[r.path], quantile(by[r], 0.5)))
		}
	}
	res.byKind = strings.Join(parts, ", ")

	// The same through controller-runtime's webhook.
	all = all[:0]
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := p.next()
		req := httptest.NewRequest(http.MethodPost, r.path, bytes.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		t0 := time.Now()
		hooks[r.path].ServeHTTP(rec, req)
		all = append(all, time.Since(t0))
		if rec.Code != http.StatusOK {
			return nil, fmt.Errorf("%s %s through admission.Webhook: HTTP %d: %s", r.name, r.path, rec.Code, rec.Body)
		}
	}
	res.webhookP50, res.webhookP99 = quantile(all, 0.50), quantile(all, 0.99)
	return res, nil
}

func printEval(n int, ev *evalResult) {
	fmt.Printf("admission decision in process, %d requests one at a time: the handlers' Handle, as serve runs it;\n", n)
	fmt.Printf("  admission.Webhook adds decoding the review and encoding the answer\n")
	fmt.Printf("  %-32s %12.1f\n", "Handle p50 µs", ev.p50)
	fmt.Printf("  %-32s %12.1f\n", "Handle p99 µs", ev.p99)
	fmt.Printf("  %-32s %12.1f\n", "admission.Webhook p50 µs", ev.webhookP50)
	fmt.Printf("  %-32s %12.1f\n", "admission.Webhook p99 µs", ev.webhookP99)
	fmt.Printf("  %-32s %s\n", "Handle p50 µs by request", ev.byKind)
}
