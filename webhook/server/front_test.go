package server

import (
	"net/http"
	"strings"
	"testing"
)

// reviewOf is validReview for a ServiceEntry named name, with its own uid.
func reviewOf(name string) string {
	r := strings.ReplaceAll(validReview, `"test-com"`, `"`+name+`"`)
	return strings.Replace(r, "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01", "uid-"+name, 1)
}

func withUID(uid string) string {
	return strings.Replace(validReview, `"0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01"`, uid, 1)
}

// Reviews the server cannot or must not answer go out with an HTTP 4xx
// status and a message naming the problem, are never evaluated, and are
// logged in one line without a stack trace: through the real HTTP server,
// limitBody, controller-runtime's webhook and the handlers.
func TestMalformedReviewsGetHTTP400(t *testing.T) {
	e := &faulty{Engine: defaultEngine(t)}
	s := newStack(t, stackOptions{engine: e, limit: 2})
	// Reviews that spell apiVersion or kind twice are refused once
	// controller-runtime has typed its answer by the other spelling: they
	// are evaluated, and their answer is not sent.
	const evaluatedFirst = 2
	for _, tc := range []struct {
		name, query, body, message string
	}{
		{"not json", "", "{kind: AdmissionReview", "malformed AdmissionReview: invalid character 'k' looking for beginning of object key string"},
		{"truncated json", "", validReview[:100], "malformed AdmissionReview: unexpected end of JSON input"},
		{"empty body", "", "", "malformed AdmissionReview: the body is empty"},
		{"json array", "", "[]", "malformed AdmissionReview: the body is not a JSON object"},
		{"json null", "", "null", "malformed AdmissionReview: the body is not a JSON object"},
		{"no request", "", `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}`, "malformed AdmissionReview: no request or an empty request.uid"},
		{"null request", "", `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": null}`, "malformed AdmissionReview: no request or an empty request.uid"},
		{"request not an object", "", `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": [1]}`, "malformed AdmissionReview: request: want an object, not [1]"},
		{"no uid", "", strings.Replace(validReview, `"uid": "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01",`, "", 1), "malformed AdmissionReview: no request or an empty request.uid"},
		{"empty uid", "", withUID(`""`), "malformed AdmissionReview: no request or an empty request.uid"},
		{"uid a number", "", withUID(`12`), "malformed AdmissionReview: request.uid is not a string: 12"},
		{"uid not utf-8", "", withUID("\"ab\xff\xfecd\""), "malformed AdmissionReview: request.uid is not valid UTF-8"},
		{"uid with an unpaired high surrogate", "", withUID(`"ab\ud800cd"`), "malformed AdmissionReview: request.uid is not valid UTF-8: an unpaired surrogate escape"},
		{"uid with an unpaired low surrogate", "", withUID(`"ab\udc00"`), "malformed AdmissionReview: request.uid is not valid UTF-8: an unpaired surrogate escape"},
		{"uid ending in a high surrogate", "", withUID(`"ab\ud83d"`), "malformed AdmissionReview: request.uid is not valid UTF-8: an unpaired surrogate escape"},
		{"bogus operation", "", strings.Replace(validReview, `"CREATE"`, `"BOGUS"`, 1), `malformed AdmissionReview: request.operation "BOGUS" is not one of CREATE, UPDATE, DELETE, CONNECT`},
		{"lowercase operation", "", strings.Replace(validReview, `"CREATE"`, `"create"`, 1), `malformed AdmissionReview: request.operation "create" is not one of CREATE, UPDATE, DELETE, CONNECT`},
		{"no operation", "", strings.Replace(validReview, `"operation": "CREATE",`, "", 1), "malformed AdmissionReview: request.operation is missing"},
		{"operation in another case", "", strings.Replace(validReview, `"operation": "CREATE",`, `"Operation": "CREATE",`, 1), "malformed AdmissionReview: request.operation is missing"},
		{"apiVersion v2", "", strings.Replace(validReview, `"admission.k8s.io/v1"`, `"admission.k8s.io/v2"`, 1), `malformed AdmissionReview: apiVersion "admission.k8s.io/v2", kind "AdmissionReview": want an AdmissionReview of admission.k8s.io/v1 or admission.k8s.io/v1beta1`},
		{"another kind", "", strings.Replace(strings.Replace(validReview, `"admission.k8s.io/v1"`, `"v1"`, 1), `"kind": "AdmissionReview"`, `"kind": "Pod"`, 1), `malformed AdmissionReview: apiVersion "v1", kind "Pod": want an AdmissionReview of`},
		{"AdmissionRequest", "", strings.Replace(validReview, `"kind": "AdmissionReview"`, `"kind": "AdmissionRequest"`, 1), `kind "AdmissionRequest": want an AdmissionReview`},
		{"no apiVersion nor kind", "", strings.Replace(strings.Replace(validReview, `"apiVersion": "admission.k8s.io/v1",`, "", 1), `"kind": "AdmissionReview",`, "", 1), `malformed AdmissionReview: apiVersion "", kind "": want an AdmissionReview`},
		{"apiVersion a number", "", strings.Replace(validReview, `"apiVersion": "admission.k8s.io/v1"`, `"apiVersion": 1`, 1), "malformed AdmissionReview: apiVersion is not a string: 1"},
		{"apiVersion in another case", "", strings.Replace(validReview, `"apiVersion": "admission.k8s.io/v1"`, `"APIVersion": "admission.k8s.io/v1"`, 1), `malformed AdmissionReview: apiVersion "", kind "AdmissionReview"`},
		// apimachinery reads apiVersion and kind with encoding/json, whose
		// keys match in any case: the last spelling would type the answer.
		{"apiVersion twice", "", strings.Replace(validReview, `"apiVersion": "admission.k8s.io/v1",`, `"apiVersion": "admission.k8s.io/v1", "APIVersion": "admission.k8s.io/v1beta1",`, 1), "malformed AdmissionReview: apiVersion or kind given twice, in different cases"},
		{"kind twice", "", strings.Replace(validReview, `"kind": "AdmissionReview",`, `"kind": "AdmissionReview", "Kind": "Pod",`, 1), "malformed AdmissionReview: apiVersion or kind given twice, in different cases"},
		// Past the envelope: controller-runtime's decoder refuses it.
		{"dryRun a string", "", strings.Replace(validReview, `"dryRun": false`, `"dryRun": "no"`, 1), "malformed AdmissionReview: "},
		{"timeout not a duration", "?timeout=soon", validReview, `timeout query parameter "soon": want a positive duration such as 10s`},
		{"negative timeout", "?timeout=-10s", validReview, `timeout query parameter "-10s": want a positive duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{MutatePath, ValidatePath} {
				s.log.take()
				r := s.post(t, path+tc.query, tc.body)
				if r.status != http.StatusBadRequest || r.code() != http.StatusBadRequest {
					t.Errorf("%s: HTTP %d, status code %d; want 400 for both:\n%s", path, r.status, r.code(), r.raw)
				}
				if r.review.Response.Allowed {
					t.Errorf("%s: allowed", path)
				}
				if msg := r.message(); !strings.Contains(msg, tc.message) {
					t.Errorf("%s: message %q does not contain %q", path, msg, tc.message)
				}
				lines := s.log.take()
				if len(lines) != 1 {
					t.Errorf("%s: want one log line, got %d: %q", path, len(lines), lines)
				}
				for _, l := range lines {
					if !strings.Contains(l, "refused") || strings.Contains(l, "goroutine ") || strings.Contains(l, ".go:") {
						t.Errorf("%s: log line %q: want a refusal without a stack trace", path, l)
					}
				}
			}
		})
	}
	// One evaluation per webhook for each review refused after it.
	if n := e.evals.Load(); n != 2*evaluatedFirst {
		t.Errorf("%d evaluations of refused reviews, want %d", n, 2*evaluatedFirst)
	}
	if n := s.counter(t, "egress_guard_admission_requests_total"); n != 2*evaluatedFirst {
		t.Errorf("%v refused reviews reached the handlers, want %d", n, 2*evaluatedFirst)
	}

	// Reviews it can answer go out with 200 and the uid sent.
	for _, tc := range []struct {
		name, query, body, uid, apiVersion string
	}{
		{"valid review", "", validReview, "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01", "admission.k8s.io/v1"},
		{"the API server's timeout", "?timeout=10s", validReview, "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01", "admission.k8s.io/v1"},
		{"v1beta1", "", strings.Replace(validReview, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01", "admission.k8s.io/v1beta1"},
		{"uid with a surrogate pair", "", withUID(`"ab\ud83d\ude00cd"`), "ab\U0001F600cd", "admission.k8s.io/v1"},
		{"uid with escapes", "", withUID(`"a\"b\\c\u00e9\/"`), `a"b\cé/`, "admission.k8s.io/v1"},
		{"delete", "", strings.Replace(validReview, `"CREATE"`, `"DELETE"`, 1), "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01", "admission.k8s.io/v1"},
		{"connect", "", strings.Replace(validReview, `"CREATE"`, `"CONNECT"`, 1), "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01", "admission.k8s.io/v1"},
	} {
		for _, path := range []string{MutatePath, ValidatePath} {
			r := s.post(t, path+tc.query, tc.body)
			if r.status != http.StatusOK || r.review.Response.UID != tc.uid || r.review.APIVersion != tc.apiVersion {
				t.Errorf("%s %s: HTTP %d, uid %q, %s; want 200, uid %q, %s:\n%s", tc.name, path, r.status, r.review.Response.UID, r.review.APIVersion, tc.uid, tc.apiVersion, r.raw)
			}
		}
	}
}

// A kind the webhook does not handle is counted under kind="other": the
// client names the kind, and a series per name would grow without bound.
func TestRequestMetricKindIsBounded(t *testing.T) {
	s := newStack(t, stackOptions{engine: defaultEngine(t), limit: 1})
	for _, kind := range []string{"Gateway", "MadeUp1", "MadeUp2"} {
		body := strings.Replace(validReview, `"version": "v1", "kind": "ServiceEntry"}`, `"version": "v1", "kind": "`+kind+`"}`, 1)
		if r := s.post(t, ValidatePath, body); r.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", kind, r.status, r.raw)
		}
	}
	if r := s.post(t, ValidatePath, validReview); r.status != http.StatusOK {
		t.Fatalf("HTTP %d %s", r.status, r.raw)
	}
	if got := s.counter(t, "egress_guard_admission_requests_total", "kind", "other"); got != 3 {
		t.Errorf("%v requests counted under kind=other, want 3", got)
	}
	if got := s.counter(t, "egress_guard_admission_requests_total", "kind", "ServiceEntry"); got != 1 {
		t.Errorf("%v requests counted under kind=ServiceEntry, want 1", got)
	}
	for _, kind := range []string{"Gateway", "MadeUp1", "MadeUp2"} {
		if got := s.counter(t, "egress_guard_admission_requests_total", "kind", kind); got != 0 {
			t.Errorf("a series for kind %s", kind)
		}
	}
}
