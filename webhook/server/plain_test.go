package server

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// FuzzReadPlain holds readEnvelope's fast path to the typed decoding it
// stands in for: on every body the fast path takes, the typed decoding reads
// the same envelope and finds nothing wrong, or refuses a body that
// controller-runtime's decoder (which comes next) refuses too. What the
// fast path does not take goes the typed way. The seeds
// are FuzzAdmissionReview's and the handlers' reviews.
//
// To search further: go test ./webhook/server -run '^$' -fuzz FuzzReadPlain.
func FuzzReadPlain(f *testing.F) {
	seeds := 0
	for _, pattern := range []string{"testdata/fuzz/FuzzAdmissionReview/*", "../handler/testdata/*/review.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			if rest, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(rest), ")"))
				if err != nil {
					f.Fatalf("%s: %v", file, err)
				}
				b = []byte(s)
			}
			f.Add(b)
			seeds++
		}
	}
	if seeds < 50 {
		f.Fatalf("only %d seeds found", seeds)
	}
	scheme := runtime.NewScheme()
	if err := admissionv1.AddToScheme(scheme); err != nil {
		f.Fatal(err)
	}
	if err := admissionv1beta1.AddToScheme(scheme); err != nil {
		f.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	f.Fuzz(func(t *testing.T, body []byte) {
		env, ok := readPlain(body)
		if !ok {
			return
		}
		typed, problem := readTyped(body)
		if problem == "" {
			if env != typed {
				t.Fatalf("the fast path reads %+v, the typed decoding %+v, of %q", env, typed, body)
			}
			return
		}
		var review admissionv1.AdmissionReview
		if _, _, err := decoder.Decode(body, nil, &review); err == nil {
			t.Fatalf("the fast path takes a body the typed decoding refuses (%s) and controller-runtime's decoder takes: %q", problem, body)
		}
	})
}

// TestReadPlainTakesAPIServerReviews: the reviews the API server writes take
// the fast path.
func TestReadPlainTakesAPIServerReviews(t *testing.T) {
	files, err := filepath.Glob("../handler/testdata/*/review.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no reviews: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		env, ok := readPlain(b)
		typed, problem := readTyped(b)
		if !ok || env != typed || problem != "" || env.uid == "" || env.kind == "" {
			t.Errorf("%s: fast path ok %v, envelope %+v; typed %+v, problem %q", file, ok, env, typed, problem)
		}
	}
}
