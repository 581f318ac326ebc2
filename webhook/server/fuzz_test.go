package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	kjson "sigs.k8s.io/json"

	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// FuzzAdmissionReview posts bodies through the endpoints as served
// (limitBody, controller-runtime's admission.Webhook, the handlers within
// their limit, the engine of the embedded policy pack) to both webhooks. No
// panic may escape, nor be contained (a contained panic is still a bug);
// the answer is either an AdmissionReview for the uid sent, in the review's
// version, or an HTTP 4xx or 5xx with a message; a review the server could
// not fully decode is never answered with 200, let alone allowed.
//
// The seeds in testdata/fuzz/FuzzAdmissionReview run in every go test; to
// search further: go test ./webhook/server -run '^$' -fuzz FuzzAdmissionReview.
func FuzzAdmissionReview(f *testing.F) {
	e := defaultEngine(f)
	reg := prometheus.NewRegistry()
	log := &logLines{}
	deps := handler.Deps{
		Engine:  func() guard.Engine { return e },
		Metrics: metrics.New(reg),
		Log:     log.logger(),
		Limit:   handler.NewLimit(10),
	}
	mutate, validate := endpoints(deps, 0)
	s := &stack{reg: reg}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, wh := range []struct {
			path string
			h    http.Handler
		}{{MutatePath, mutate}, {ValidatePath, validate}} {
			req := httptest.NewRequest(http.MethodPost, wh.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			wh.h.ServeHTTP(w, req)
			checkAnswer(t, wh.path, body, w)
		}
		if n := s.counter(t, "egress_guard_panics_total"); n > 0 {
			t.Fatalf("a panic was contained:\n%s", strings.Join(log.take(), "\n"))
		}
		log.take()
	})
}

// checkAnswer holds an answer to what FuzzAdmissionReview requires.
func checkAnswer(t *testing.T, path string, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	var answer struct {
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
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || !utf8.Valid(w.Body.Bytes()) {
		t.Fatalf("%s: HTTP %d: the answer is not JSON (%v): %q", path, w.Code, err, w.Body)
	}
	if answer.Kind != "AdmissionReview" || answer.Response == nil {
		t.Fatalf("%s: HTTP %d: the answer is not an AdmissionReview with a response: %s", path, w.Code, w.Body)
	}
	sent, decodable := decodeReview(body)
	if w.Code != http.StatusOK {
		if w.Code < 400 || w.Code > 599 || answer.Response.Allowed || answer.Response.Status == nil || answer.Response.Status.Message == "" || answer.Response.Status.Code != w.Code {
			t.Fatalf("%s: HTTP %d: an error answer must refuse, with the status code and a message: %s", path, w.Code, w.Body)
		}
		return
	}
	if !decodable {
		t.Fatalf("%s: HTTP 200 (allowed %v) for a review that does not decode: %s", path, answer.Response.Allowed, w.Body)
	}
	if answer.APIVersion != sent.APIVersion || answer.Response.UID != string(sent.Request.UID) {
		t.Fatalf("%s: answered %s for uid %q; the review was %s with uid %q", path, answer.APIVersion, answer.Response.UID, sent.APIVersion, sent.Request.UID)
	}
	if !answer.Response.Allowed && (answer.Response.Status == nil || answer.Response.Status.Message == "") {
		t.Fatalf("%s: a refusal without a message: %s", path, w.Body)
	}
}

// decodeReview decodes an AdmissionReview as controller-runtime does
// (case-sensitive keys) and says whether it is one the API server could have
// sent: admission.k8s.io/v1 or v1beta1, spelt so that apimachinery's reading
// of apiVersion and kind (encoding/json, keys in any case) agrees, with a
// request, a known operation and a non-empty uid that came through as sent
// (valid UTF-8, no unpaired surrogate). The decoders replace what is not
// valid UTF-8 with U+FFFD: a U+FFFD in the uid that the body did not spell
// out is such a replacement.
func decodeReview(body []byte) (*admissionv1.AdmissionReview, bool) {
	var review admissionv1.AdmissionReview
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return nil, false
	}
	var gvk struct{ APIVersion, Kind string }
	if err := json.Unmarshal(body, &gvk); err != nil || gvk.APIVersion != review.APIVersion || gvk.Kind != review.Kind {
		return nil, false
	}
	if review.Kind != "AdmissionReview" || (review.APIVersion != "admission.k8s.io/v1" && review.APIVersion != "admission.k8s.io/v1beta1") {
		return nil, false
	}
	r := review.Request
	if r == nil || r.UID == "" {
		return nil, false
	}
	switch r.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
	default:
		return nil, false
	}
	if strings.ContainsRune(string(r.UID), utf8.RuneError) && !bytes.Contains(body, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
		return nil, false
	}
	return &review, true
}
