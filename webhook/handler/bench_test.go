package handler_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// BenchmarkHandlers serves AdmissionReviews through controller-runtime's
// webhook in process: decoding, evaluation, response. It profiles the work
// around the policy evaluation.
func BenchmarkHandlers(b *testing.B) {
	for _, name := range []string{"vs-direct-patched", "vs-two-leg-unchanged", "se-denied-egr101"} {
		b.Run(name, func(b *testing.B) {
			e := loadEngine(b, filepath.Join("testdata", "..", "..", "..", "test", "scenarios", "000-http-mtls-origination", "config.yaml"))
			deps := handler.Deps{Engine: func() guard.Engine { return e }, Metrics: metrics.New(prometheus.NewRegistry()), Log: logr.Discard()}
			review := readFile(b, filepath.Join("testdata", name, "review.json"))
			for _, wh := range []struct {
				path string
				h    admission.Handler
			}{{"mutate", &handler.Mutating{Deps: deps}}, {"validate", &handler.Validating{Deps: deps}}} {
				hook := &admission.Webhook{Handler: wh.h, LogConstructor: discardLog}
				b.Run(wh.path, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						req := httptest.NewRequest(http.MethodPost, "/"+wh.path, bytes.NewReader(review))
						req.Header.Set("Content-Type", "application/json")
						rec := httptest.NewRecorder()
						hook.ServeHTTP(rec, req)
					}
				})
			}
		})
	}
}
