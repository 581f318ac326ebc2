package handler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// Warn and dry-run decisions become Events on the object, except for the
// API server's dry runs, which must have no side effects.
func TestEvents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dryRun bool
		want   []string // "reason code" of the events
	}{
		{"dryrun-enforcement", false, []string{"EgressGuardWouldPatch EGR303", "EgressGuardWouldDeny EGR303"}},
		{"warn-enforcement", false, []string{"EgressGuardWarning EGR101"}},
		{"warn-mutation", false, []string{"EgressGuardWarning EGR201", "EgressGuardWarning EGR201"}},
		{"override-per-rule", false, []string{"EgressGuardWouldPatch EGR201", "EgressGuardWouldDeny EGR201"}},
		{"dryrun-enforcement", true, nil},
		{"vs-direct-patched", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join("testdata", tc.name, "config.yaml")
			if tc.name == "vs-direct-patched" {
				cfg = scenario(scenario000, "config.yaml")
			}
			rec := record.NewFakeRecorder(10)
			deps := handler.Deps{
				Engine:   func() guard.Engine { return loadEngine(t, cfg) },
				Metrics:  metrics.New(prometheus.NewRegistry()),
				Log:      testr.New(t),
				Recorder: rec,
			}
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(readFile(t, filepath.Join("testdata", tc.name, "review.json")), &review); err != nil {
				t.Fatal(err)
			}
			req := admission.Request{AdmissionRequest: *review.Request}
			req.DryRun = &tc.dryRun
			(&handler.Mutating{Deps: deps}).Handle(context.Background(), req)
			(&handler.Validating{Deps: deps}).Handle(context.Background(), req)
			close(rec.Events)
			var got []string
			for e := range rec.Events {
				// FakeRecorder formats "<type> <reason> <message>".
				f := strings.Fields(e)
				if len(f) < 3 || f[0] != "Warning" {
					t.Errorf("event %q", e)
					continue
				}
				got = append(got, f[1]+" "+f[2])
				if !bytes.Contains([]byte(e), []byte(f[2]+" (")) {
					t.Errorf("event %q does not say the action", e)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events %q, want %q", got, tc.want)
			}
		})
	}
}
