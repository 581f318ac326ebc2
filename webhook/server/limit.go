package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body: an object and its
// old version at etcd's object limit, with room for the envelope.
const DefaultMaxRequestBytes = 2*1572864 + 256*1024

// limitBody answers a request that is not a POST of JSON within the size
// limit with an HTTP error (405, 415 or 413) and a message, and hands the
// rest to next; when next answers with an error it could not tie to a
// request (a review it could not decode, or one without a uid), the answer
// goes out with that error's HTTP status (400) instead of 200.
func limitBody(limit int64, next http.Handler) http.Handler {
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpError(w, http.StatusMethodNotAllowed, "only POST of an AdmissionReview is served here")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			httpError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: expected application/json", ct))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			httpError(w, http.StatusBadRequest, "reading the request: "+err.Error())
			return
		}
		if int64(len(body)) > limit {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the AdmissionReview is over the %d-byte limit", limit))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rec := &answer{header: w.Header()}
		next.ServeHTTP(rec, r)
		if code, msg := rec.failure(); code != 0 {
			httpError(w, code, msg)
			return
		}
		if rec.code != 0 {
			w.WriteHeader(rec.code)
		}
		_, _ = w.Write(rec.body.Bytes())
	})
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
// request (no uid) and carries an error status; 0 otherwise.
func (r *answer) failure() (int, string) {
	var review struct {
		Response *struct {
			UID    string `json:"uid"`
			Status *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if r.code != 0 && r.code != http.StatusOK {
		return 0, ""
	}
	// Every answer tied to a request carries its non-empty uid; only an
	// answer that may lack one is worth decoding.
	if !bytes.Contains(r.body.Bytes(), []byte(`"uid":""`)) && bytes.Contains(r.body.Bytes(), []byte(`"uid":"`)) {
		return 0, ""
	}
	if err := json.Unmarshal(r.body.Bytes(), &review); err != nil || review.Response == nil {
		return 0, ""
	}
	if resp := review.Response; resp.UID == "" && resp.Status != nil && resp.Status.Code >= 400 {
		return resp.Status.Code, "malformed AdmissionReview: " + strings.TrimPrefix(resp.Status.Message, "malformed AdmissionReview: ")
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
