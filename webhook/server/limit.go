package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kjson "sigs.k8s.io/json"

	"github.com/egress-guard/egress-guard/webhook/metrics"
	"github.com/egress-guard/egress-guard/webhook/object"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body: an object and its
// old version at etcd's object limit, with room for the envelope.
const DefaultMaxRequestBytes = 2*1572864 + 256*1024

// WhereHTTP labels a panic in the HTTP layer of a request (reading the body,
// controller-runtime's decoding, writing the answer) in
// egress_guard_panics_total.
const WhereHTTP = "http"

// frontOptions configure limitBody.
type frontOptions struct {
	// maxBytes bounds the body (0: DefaultMaxRequestBytes).
	maxBytes int64
	// metrics counts panics (nil: not counted).
	metrics *metrics.Metrics
	log     logr.Logger
}

// limitBody stands in front of controller-runtime's admission.Webhook. It
// answers with an HTTP error status (4xx, with an AdmissionReview whose
// status says why) and a log line, without going further:
//   - a request that is not a POST of JSON within the size limit (405, 415,
//     413);
//   - a body that is not an AdmissionReview of admission.k8s.io/v1 or v1beta1
//     with a request, a uid that is a non-empty valid UTF-8 string and a known
//     operation (400);
//   - a timeout query parameter that is not a positive duration (400).
//
// The rest goes to next, with a deadline a little before the timeout the API
// server gives in the URL (?timeout=10s), so that an answer gets back in
// time. When next answers with an error it could not tie to a request (a
// review it could not decode), the answer goes out with that error's HTTP
// status (400) instead of 200; an overload answer (status code 429 or 503)
// goes out as that HTTP status, with Retry-After. A panic below is that
// request's error answer (HTTP 200, status code 500), logged with its stack.
//
// Why overloads are HTTP statuses: the API server takes any AdmissionReview
// answer that does not allow as a refusal, whatever the webhook's
// failurePolicy. An HTTP error status is a failed call instead: the API
// server's client retries a 429 or 503 that carries Retry-After while the
// webhook's timeoutSeconds lasts, and then applies the failurePolicy (Fail
// refuses the write, Ignore admits it). Being busy is no verdict on the
// object, so it is the platform's failurePolicy that decides; the object
// itself (a panic, an evaluation past its deadline) is never admitted.
func limitBody(o frontOptions, next http.Handler) http.Handler {
	limit := o.maxBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			o.refuse(w, r, http.StatusMethodNotAllowed, "only POST of an AdmissionReview is served here")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			o.refuse(w, r, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: expected application/json", ct))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			o.refuse(w, r, http.StatusBadRequest, "reading the request: "+err.Error())
			return
		}
		if int64(len(body)) > limit {
			o.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the AdmissionReview is over the %d-byte limit", limit))
			return
		}
		env, problem := readEnvelope(body)
		if problem != "" {
			o.refuse(w, r, http.StatusBadRequest, "malformed AdmissionReview: "+problem)
			return
		}
		timeout, problem := requestTimeout(r)
		if problem != "" {
			o.refuse(w, r, http.StatusBadRequest, problem)
			return
		}
		if timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), handlerBudget(timeout))
			defer cancel()
			r = r.WithContext(ctx)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rec := &answer{header: w.Header()}
		if pe := o.serve(next, rec, r); pe != nil {
			o.panicked(w, r, env, pe)
			return
		}
		if code, msg := rec.failure(); code != 0 {
			if code == http.StatusBadRequest {
				o.log.Info("refused a malformed AdmissionReview", "path", r.URL.Path, "status", code, "reason", msg, "uid", env.uid, "remoteAddr", r.RemoteAddr)
			}
			if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			httpError(w, code, msg)
			return
		}
		if (rec.code == 0 || rec.code == http.StatusOK) && !sameType(rec.body.Bytes(), env) {
			o.refuse(w, r, http.StatusBadRequest, "malformed AdmissionReview: apiVersion or kind given twice, in different cases")
			return
		}
		if rec.code != 0 {
			w.WriteHeader(rec.code)
		}
		_, _ = w.Write(rec.body.Bytes())
	})
}

// panicValue is a panic recovered below limitBody.
type panicValue struct {
	value any
	stack []byte
}

// serve calls next, with a panic contained.
func (o frontOptions) serve(next http.Handler, w http.ResponseWriter, r *http.Request) (pe *panicValue) {
	defer func() {
		if v := recover(); v != nil {
			pe = &panicValue{value: v, stack: debug.Stack()}
		}
	}()
	next.ServeHTTP(w, r)
	return nil
}

// panicked answers the request whose work panicked with an error for its
// uid, logs the panic with its stack in one entry and counts it.
func (o frontOptions) panicked(w http.ResponseWriter, r *http.Request, env envelope, pe *panicValue) {
	if o.metrics != nil {
		o.metrics.Panic(WhereHTTP)
	}
	id := env.id()
	o.log.Error(fmt.Errorf("panic: %v", pe.value), "panic while answering an admission request", "object", id, "where", WhereHTTP, "path", r.URL.Path, "stack", string(pe.stack))
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: env.apiVersion, Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{
			UID: types.UID(env.uid),
			Result: &metav1.Status{
				Code:    http.StatusInternalServerError,
				Message: fmt.Sprintf("egress-guard: %s: internal error: %v", id, pe.value),
			},
		},
	}
	// Headers the panicking handler may have set do not apply.
	for k := range w.Header() {
		w.Header().Del(k)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(review)
}

// refuse answers with an HTTP error and logs one line.
func (o frontOptions) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	o.log.Info("refused a request", "path", r.URL.Path, "status", code, "reason", msg, "remoteAddr", r.RemoteAddr)
	httpError(w, code, msg)
}

// envelope is what limitBody reads of a review: enough to refuse a malformed
// one and to name its object.
type envelope struct {
	apiVersion, uid              string
	kind, namespace, name, gname string
}

// id names the object as the handlers do: by its generateName when it has
// no name yet.
func (e envelope) id() string {
	name := e.name
	if name == "" {
		name = e.gname
	}
	return object.ID(e.kind, e.namespace, name)
}

// envelopeFields are the fields of the request limitBody reads, each as
// written; typed decoding fails on a request that is no object, or whose
// kind or object (or its metadata) is no object, and then the slower reading
// of readRequest explains.
type envelopeFields struct {
	UID       json.RawMessage `json:"uid"`
	Operation json.RawMessage `json:"operation"`
	Kind      struct {
		Kind json.RawMessage `json:"kind"`
	} `json:"kind"`
	Namespace json.RawMessage `json:"namespace"`
	Name      json.RawMessage `json:"name"`
	Object    struct {
		Metadata struct {
			GenerateName json.RawMessage `json:"generateName"`
		} `json:"metadata"`
	} `json:"object"`
}

// readEnvelope reads the review's envelope as controller-runtime's decoder
// reads the request (case-sensitive keys; of duplicates, the last one
// counts), and says what is wrong with it, or "". apimachinery reads
// apiVersion and kind to type its answer otherwise (encoding/json, whose keys
// match in any case): limitBody checks the answer's type too (sameType).
//
// A review as the API server writes it takes a fast path (readPlain); any
// other takes the typed decoding, which says what is wrong.
func readEnvelope(body []byte) (envelope, string) {
	if env, ok := readPlain(body); ok {
		return env, ""
	}
	return readTyped(body)
}

// readTyped is readEnvelope by typed decoding.
func readTyped(body []byte) (envelope, string) {
	var env envelope
	switch first := bytes.TrimLeft(body, " \t\r\n"); {
	case len(first) == 0:
		return env, "the body is empty"
	case first[0] != '{':
		return env, "the body is not a JSON object"
	}
	var review struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Request    *envelopeFields `json:"request"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return readParts(body)
	}
	if problem := checkType(review.APIVersion, review.Kind); problem != "" {
		return env, problem
	}
	env.apiVersion = review.APIVersion
	req := review.Request
	if req == nil {
		return env, noRequest
	}
	env.kind, _ = jsonString(req.Kind.Kind)
	env.gname, _ = jsonString(req.Object.Metadata.GenerateName)
	return env, checkRequest(&env, req)
}

func checkType(apiVersion, kind string) string {
	if kind != "AdmissionReview" || (apiVersion != admissionv1.SchemeGroupVersion.String() && apiVersion != admissionv1beta1.SchemeGroupVersion.String()) {
		return fmt.Sprintf("apiVersion %q, kind %q: want an AdmissionReview of %s or %s", apiVersion, kind, admissionv1.SchemeGroupVersion, admissionv1beta1.SchemeGroupVersion)
	}
	return ""
}

// readParts is readEnvelope for a review the typed decoding refused: each
// part is read on its own, to say which is wrong, or to find nothing wrong
// that controller-runtime's decoder would mind.
func readParts(body []byte) (envelope, string) {
	var env envelope
	var review struct {
		APIVersion json.RawMessage `json:"apiVersion"`
		Kind       json.RawMessage `json:"kind"`
		Request    json.RawMessage `json:"request"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return env, err.Error()
	}
	var typ [2]string
	for i, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"apiVersion", review.APIVersion}, {"kind", review.Kind}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		var problem string
		if typ[i], problem = jsonString(f.raw); problem != "" {
			return env, f.name + " " + problem
		}
	}
	if problem := checkType(typ[0], typ[1]); problem != "" {
		return env, problem
	}
	env.apiVersion = typ[0]
	if len(review.Request) == 0 || string(review.Request) == "null" {
		return env, noRequest
	}
	if review.Request[0] != '{' {
		return env, fmt.Sprintf("request: want an object, not %s", shown(review.Request))
	}
	var raw struct {
		UID       json.RawMessage `json:"uid"`
		Operation json.RawMessage `json:"operation"`
		Kind      json.RawMessage `json:"kind"`
		Namespace json.RawMessage `json:"namespace"`
		Name      json.RawMessage `json:"name"`
		Object    json.RawMessage `json:"object"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(review.Request, &raw); err != nil {
		return env, err.Error()
	}
	req := &envelopeFields{UID: raw.UID, Operation: raw.Operation, Namespace: raw.Namespace, Name: raw.Name}
	// The object's kind and names serve messages only; the decoder after
	// this one checks their types.
	_ = kjson.UnmarshalCaseSensitivePreserveInts(raw.Kind, &req.Kind)
	_ = kjson.UnmarshalCaseSensitivePreserveInts(raw.Object, &req.Object)
	env.kind, _ = jsonString(req.Kind.Kind)
	env.gname, _ = jsonString(req.Object.Metadata.GenerateName)
	return env, checkRequest(&env, req)
}

// sameType says whether an answer is typed as the review limitBody read:
// apimachinery types the answer by its own reading of apiVersion and kind,
// which differs only for a review that spells them twice, in different
// cases.
func sameType(answer []byte, env envelope) bool {
	if bytes.HasPrefix(answer, []byte(`{"kind":"AdmissionReview","apiVersion":"`+env.apiVersion+`",`)) {
		return true
	}
	var typ struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	return json.Unmarshal(answer, &typ) == nil && typ.Kind == "AdmissionReview" && typ.APIVersion == env.apiVersion
}

// checkRequest checks the uid and operation of a request, and records its
// names and uid in env.
func checkRequest(env *envelope, req *envelopeFields) string {
	env.namespace, _ = jsonString(req.Namespace)
	env.name, _ = jsonString(req.Name)
	if len(req.UID) == 0 || string(req.UID) == `""` || string(req.UID) == "null" {
		return noRequest
	}
	uid, problem := jsonString(req.UID)
	if problem != "" {
		return "request.uid " + problem
	}
	env.uid = uid
	op, problem := jsonString(req.Operation)
	if problem != "" {
		return "request.operation " + problem
	}
	return checkOperation(op)
}

// noRequest is what is wrong with a review without a request or a uid.
const noRequest = "no request or an empty request.uid"

// checkOperation says what is wrong with a request's operation, or "".
func checkOperation(op string) string {
	switch admissionv1.Operation(op) {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		return ""
	}
	return fmt.Sprintf("request.operation %q is not one of CREATE, UPDATE, DELETE, CONNECT", op)
}

// shown quotes a JSON value for a message, cut short.
func shown(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "missing"
	}
	if len(raw) > 64 {
		return strconv.Quote(string(raw[:64])) + "..."
	}
	return string(raw)
}

// jsonString decodes a JSON string that must be valid UTF-8, escapes
// included: a decoder would turn invalid bytes and unpaired surrogates into
// U+FFFD, and an answer would echo a uid the API server did not send.
func jsonString(raw json.RawMessage) (string, string) {
	if len(raw) == 0 {
		return "", "is missing"
	}
	if len(raw) < 2 || raw[0] != '"' {
		return "", "is not a string: " + shown(raw)
	}
	if !utf8.Valid(raw) {
		return "", "is not valid UTF-8"
	}
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw[i+1:])
		if !ok {
			continue // the decoder below says what is wrong
		}
		i += 4
		if !utf16.IsSurrogate(r) {
			continue
		}
		if r >= 0xdc00 || i+6 >= len(raw)-1 || raw[i+1] != '\\' || raw[i+2] != 'u' {
			return "", "is not valid UTF-8: an unpaired surrogate escape"
		}
		low, ok := hex4(raw[i+3:])
		if !ok || utf16.DecodeRune(r, low) == utf8.RuneError {
			return "", "is not valid UTF-8: an unpaired surrogate escape"
		}
		i += 6
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err.Error()
	}
	return s, ""
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(n), err == nil
}

// requestTimeout is the timeout query parameter the API server puts on the
// URL (0 when absent), or what is wrong with it.
func requestTimeout(r *http.Request) (time.Duration, string) {
	v := r.URL.Query().Get("timeout")
	if v == "" {
		return 0, ""
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Sprintf("timeout query parameter %q: want a positive duration such as 10s", v)
	}
	return d, ""
}

// handlerBudget is the part of the API server's timeout the handlers get:
// the rest is a margin for the answer to travel back (a tenth, from 100ms
// to 1s, and at most half).
func handlerBudget(timeout time.Duration) time.Duration {
	margin := min(max(timeout/10, 100*time.Millisecond), time.Second, timeout/2)
	return timeout - margin
}

// answer holds the webhook's answer so that an error the webhook could not
// tie to a request (a review it could not decode, answered without a uid)
// goes out with its HTTP status, not 200. The answer is small; reading it
// costs less than decoding the request twice.
type answer struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *answer) Header() http.Header         { return r.header }
func (r *answer) WriteHeader(code int)        { r.code = code }
func (r *answer) Write(b []byte) (int, error) { return r.body.Write(b) }

// failure is the HTTP status and message of an answer that ties to no
// request (no uid) and carries an error status, or of an overload answer
// (status code 429 or 503); 0 otherwise.
func (r *answer) failure() (int, string) {
	var review struct {
		Response *struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Status  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if r.code != 0 && r.code != http.StatusOK {
		return 0, ""
	}
	body := r.body.Bytes()
	// Every answer tied to a request carries its non-empty uid; only an
	// answer that may lack one, or that may be an overload, is worth
	// decoding. (Quotes inside JSON strings are escaped: these are keys.)
	overload := bytes.Contains(body, []byte(`"code":429`)) || bytes.Contains(body, []byte(`"code":503`))
	if !overload && !bytes.Contains(body, []byte(`"uid":""`)) && bytes.Contains(body, []byte(`"uid":"`)) {
		return 0, ""
	}
	if err := json.Unmarshal(body, &review); err != nil || review.Response == nil {
		return 0, ""
	}
	resp := review.Response
	if resp.Allowed || resp.Status == nil {
		return 0, ""
	}
	switch code := resp.Status.Code; {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return code, resp.Status.Message
	case resp.UID == "" && code >= 400:
		return code, "malformed AdmissionReview: " + strings.TrimPrefix(resp.Status.Message, "malformed AdmissionReview: ")
	}
	return 0, ""
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: int32(code), Message: msg}},
	})
}
