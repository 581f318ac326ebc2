package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body: an object and its
// old version at etcd's object limit, with room for the envelope.
const DefaultMaxRequestBytes = 2*1572864 + 256*1024

// limitBody answers what is not an AdmissionReview with a real HTTP error
// (400, 413 or 415) and a message, and hands the rest to next.
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
		var review struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Request    *struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		switch err := json.Unmarshal(body, &review); {
		case err != nil:
			httpError(w, http.StatusBadRequest, "malformed AdmissionReview: "+err.Error())
			return
		case review.Kind != "AdmissionReview":
			httpError(w, http.StatusBadRequest, fmt.Sprintf("malformed AdmissionReview: kind %q, expected AdmissionReview", review.Kind))
			return
		case review.Request == nil:
			httpError(w, http.StatusBadRequest, "malformed AdmissionReview: no request")
			return
		case review.Request.UID == "":
			httpError(w, http.StatusBadRequest, "malformed AdmissionReview: request.uid is empty")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: int32(code), Message: msg}},
	})
}
