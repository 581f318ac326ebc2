package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

const validReview = `{
  "apiVersion": "admission.k8s.io/v1",
  "kind": "AdmissionReview",
  "request": {
    "uid": "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01",
    "kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
    "resource": {"group": "networking.istio.io", "version": "v1", "resource": "serviceentries"},
    "name": "test-com",
    "namespace": "default",
    "operation": "CREATE",
    "userInfo": {"username": "kubernetes-admin"},
    "object": {
      "apiVersion": "networking.istio.io/v1",
      "kind": "ServiceEntry",
      "metadata": {"name": "test-com", "namespace": "default"},
      "spec": {"hosts": ["test.com"], "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}], "resolution": "DNS"}
    },
    "oldObject": null,
    "dryRun": false
  }
}`

// recorder is the next handler: it keeps what reached it.
type recorder struct {
	called        bool
	body          []byte
	contentLength int64
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.called = true
	rec.body, _ = io.ReadAll(r.Body)
	rec.contentLength = r.ContentLength
	w.WriteHeader(http.StatusTeapot)
}

func TestLimitBodyRejects(t *testing.T) {
	const limit = 2048
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        string
		code        int
		message     string
	}{
		{"get", http.MethodGet, "application/json", "", http.StatusMethodNotAllowed, "only POST of an AdmissionReview"},
		{"put", http.MethodPut, "application/json", validReview, http.StatusMethodNotAllowed, "only POST of an AdmissionReview"},
		{"yaml content type", http.MethodPost, "application/yaml", validReview, http.StatusUnsupportedMediaType, `content type "application/yaml": expected application/json`},
		{"no content type", http.MethodPost, "", validReview, http.StatusUnsupportedMediaType, `content type "": expected application/json`},
		{"over the limit", http.MethodPost, "application/json", padded(limit + 1), http.StatusRequestEntityTooLarge, "the AdmissionReview is over the 2048-byte limit"},
		{"far over the limit", http.MethodPost, "application/json", padded(10 * limit), http.StatusRequestEntityTooLarge, "the AdmissionReview is over the 2048-byte limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &recorder{}
			req := httptest.NewRequest(tc.method, "/validate", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			limitBody(frontOptions{maxBytes: limit}, next).ServeHTTP(w, req)

			if next.called {
				t.Error("the request reached the next handler")
			}
			if w.Code != tc.code {
				t.Errorf("HTTP %d, want %d (body %s)", w.Code, tc.code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			code, msg := errorReview(t, w.Body.Bytes())
			if code != tc.code {
				t.Errorf("response.status.code %d, want %d", code, tc.code)
			}
			if !strings.Contains(msg, tc.message) {
				t.Errorf("message %q does not contain %q", msg, tc.message)
			}
		})
	}
}

func TestLimitBodyPassesReviews(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		body  string
	}{
		{"valid review", 0, validReview},
		{"exactly at the limit", 2048, padded(2048)},
		// The API server's AdmissionReview for a v1beta1 webhook.
		{"v1beta1 review", 0, strings.Replace(validReview, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &recorder{}
			req := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			limitBody(frontOptions{maxBytes: tc.limit}, next).ServeHTTP(w, req)

			if !next.called {
				t.Fatalf("the review did not reach the next handler: HTTP %d %s", w.Code, w.Body)
			}
			if w.Code != http.StatusTeapot {
				t.Errorf("HTTP %d, want the next handler's %d", w.Code, http.StatusTeapot)
			}
			if !bytes.Equal(next.body, []byte(tc.body)) {
				t.Errorf("the next handler read %d bytes, not the %d sent", len(next.body), len(tc.body))
			}
			if next.contentLength != int64(len(tc.body)) {
				t.Errorf("ContentLength %d, want %d", next.contentLength, len(tc.body))
			}
		})
	}
}

// The default limit applies when none is given: the API server's request for
// two objects at etcd's limit passes, more does not.
func TestLimitBodyDefault(t *testing.T) {
	for _, tc := range []struct {
		size int
		code int
	}{
		{DefaultMaxRequestBytes, http.StatusTeapot},
		{DefaultMaxRequestBytes + 1, http.StatusRequestEntityTooLarge},
	} {
		req := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(padded(tc.size)))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		limitBody(frontOptions{}, &recorder{}).ServeHTTP(w, req)
		if w.Code != tc.code {
			t.Errorf("%d bytes: HTTP %d, want %d", tc.size, w.Code, tc.code)
		}
	}
}

// Through the real controller-runtime webhook: what limitBody lets through
// is decoded and answered.
func TestLimitBodyInFrontOfWebhook(t *testing.T) {
	var got admission.Request
	wh := &admission.Webhook{
		Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
			got = req
			return admission.Denied("no")
		}),
		LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return logr.Discard() },
	}
	srv := httptest.NewServer(limitBody(frontOptions{}, wh))
	defer srv.Close()

	res, err := http.Post(srv.URL, "application/json", strings.NewReader(validReview))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var review struct {
		Response struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
		} `json:"response"`
	}
	if err := json.NewDecoder(res.Body).Decode(&review); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || review.Response.UID != "0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01" || review.Response.Allowed {
		t.Errorf("HTTP %d, response %+v: want 200 and the handler's denial for the request's uid", res.StatusCode, review.Response)
	}
	if got.Name != "test-com" || !strings.Contains(string(got.Object.Raw), `"hosts": ["test.com"]`) {
		t.Errorf("the handler saw name %q, object %s", got.Name, got.Object.Raw)
	}
}

// padded is a valid AdmissionReview of exactly n bytes.
func padded(n int) string {
	s := strings.TrimSuffix(validReview, "}") + `, "padding": ""}`
	if n < len(s) {
		panic(fmt.Sprintf("padded(%d): a review is at least %d bytes", n, len(s)))
	}
	return strings.TrimSuffix(s, `""}`) + `"` + strings.Repeat("x", n-len(s)) + `"}`
}

func errorReview(t *testing.T, body []byte) (int, string) {
	t.Helper()
	var review struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Response   *struct {
			Allowed bool `json:"allowed"`
			Status  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &review); err != nil {
		t.Fatalf("the error body is not JSON: %v\n%s", err, body)
	}
	if review.Kind != "AdmissionReview" || review.APIVersion != "admission.k8s.io/v1" || review.Response == nil || review.Response.Status == nil {
		t.Fatalf("the error body is not an AdmissionReview with a status: %s", body)
	}
	if review.Response.Allowed {
		t.Errorf("the error answer allows: %s", body)
	}
	return review.Response.Status.Code, review.Response.Status.Message
}

const goodConfig = `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
enforcement: %s
allow:
- hosts: ["test.com"]
  ports: [80, 443]
`

// configMapDir lays out files as the kubelet mounts a ConfigMap: each name
// links to ..data/name, and ..data links to a timestamped directory that an
// update replaces atomically.
type configMapDir struct {
	t   *testing.T
	dir string
	gen int
}

func newConfigMapDir(t *testing.T, files map[string]string) *configMapDir {
	c := &configMapDir{t: t, dir: t.TempDir()}
	c.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(c.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *configMapDir) update(files map[string]string) {
	c.t.Helper()
	c.gen++
	gen := fmt.Sprintf("..2025_11_21_08_00_%02d.%d", c.gen, c.gen)
	if err := os.Mkdir(filepath.Join(c.dir, gen), 0o755); err != nil {
		c.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(c.dir, gen, name), []byte(content), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *configMapDir) path(name string) string { return filepath.Join(c.dir, name) }

func reloads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "egress_guard_policy_reloads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// eventually polls cond until it holds, for at most a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestHolderLoad(t *testing.T) {
	cm := newConfigMapDir(t, map[string]string{"config.yaml": fmt.Sprintf(goodConfig, "warn")})
	h := &Holder{configFile: cm.path("config.yaml"), log: testr.New(t), metrics: metrics.New(prometheus.NewRegistry())}
	if err := h.Checker()(nil); err == nil {
		t.Error("ready before anything is loaded")
	}
	if err := h.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Checker()(nil); err != nil {
		t.Errorf("not ready once loaded: %v", err)
	}
	if got := h.Get().Config().Enforcement; got != config.ActionWarn {
		t.Errorf("enforcement %q, want the file's warn", got)
	}

	defaults := &Holder{log: testr.New(t), metrics: metrics.New(prometheus.NewRegistry())}
	if err := defaults.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := defaults.Get().Config(); got.Enforcement != config.ActionDeny || len(got.Allow) != 0 {
		t.Errorf("without a file: enforcement %q, %d allow entries; want the embedded default (deny, none)", got.Enforcement, len(got.Allow))
	}
}

func TestHolderLoadRefusesBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(goodConfig, "block")), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Holder{configFile: cfg, log: testr.New(t), metrics: metrics.New(prometheus.NewRegistry())}
	err := h.Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "enforcement") {
		t.Errorf("Load: %v; want an error naming the file and the field", err)
	}
	if h.Get() != nil {
		t.Error("an engine is in force after a failed first load")
	}

	missing := &Holder{configFile: filepath.Join(dir, "absent.yaml"), log: testr.New(t), metrics: metrics.New(prometheus.NewRegistry())}
	if err := missing.Load(context.Background()); err == nil {
		t.Error("Load of a missing config file succeeded")
	}
}

const (
	policyOne    = "package egressguard.rules.custom\n\ndeny contains {\"code\": \"EGR900\", \"message\": \"one\"} if false\n"
	policyTwo    = "package egressguard.rules.custom\n\ndeny contains {\"code\": \"EGR900\", \"message\": \"two\"} if false\n"
	policyBroken = "package egressguard.rules.custom\n\ndeny contains {\n"
)

// watched is a Holder loaded from ConfigMap-style files and watching them.
type watched struct {
	*Holder
	config, policies *configMapDir
	reg              *prometheus.Registry
}

func watch(t *testing.T) *watched {
	t.Helper()
	w := &watched{
		config:   newConfigMapDir(t, map[string]string{"config.yaml": fmt.Sprintf(goodConfig, "deny")}),
		policies: newConfigMapDir(t, map[string]string{"custom.rego": policyOne}),
		reg:      prometheus.NewRegistry(),
	}
	w.Holder = &Holder{configFile: w.config.path("config.yaml"), policyDirs: []string{w.policies.dir}, log: testr.New(t), metrics: metrics.New(w.reg)}
	if err := w.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Watch(ctx, 5*time.Millisecond)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	})
	return w
}

func (w *watched) reloads(t *testing.T) (success, failure float64) {
	return reloads(t, w.reg, "success"), reloads(t, w.reg, "failure")
}

func TestHolderWatch(t *testing.T) {
	t.Run("unchanged files are not reloaded", func(t *testing.T) {
		w := watch(t)
		first := w.Get()
		time.Sleep(50 * time.Millisecond) // ten intervals
		if s, f := w.reloads(t); w.Get() != first || s+f != 0 {
			t.Errorf("reloaded without a change: %v successes, %v failures", s, f)
		}
	})

	t.Run("a broken config keeps the last good engine", func(t *testing.T) {
		w := watch(t)
		first := w.Get()
		w.config.update(map[string]string{"config.yaml": fmt.Sprintf(goodConfig, "block")})
		eventually(t, "a failed reload", func() bool { _, f := w.reloads(t); return f >= 1 })
		if w.Get() != first {
			t.Fatal("a failed reload replaced the engine")
		}
		if s, _ := w.reloads(t); s != 0 {
			t.Errorf("%v successful reloads counted for a broken config", s)
		}
		if err := w.Checker()(nil); err != nil {
			t.Errorf("not ready after a failed reload: %v", err)
		}
	})

	t.Run("a valid config change swaps the engine", func(t *testing.T) {
		w := watch(t)
		first := w.Get()
		w.config.update(map[string]string{"config.yaml": fmt.Sprintf(goodConfig, "warn")})
		// The engine is swapped before the success is counted.
		eventually(t, "the reload", func() bool { s, _ := w.reloads(t); return w.Get() != first && s >= 1 })
		if got := w.Get().Config().Enforcement; got != config.ActionWarn {
			t.Errorf("enforcement %q after the reload, want warn", got)
		}
		if _, f := w.reloads(t); f != 0 {
			t.Errorf("%v failures counted for a valid change", f)
		}
	})

	t.Run("a policy that does not compile keeps the last good engine until fixed", func(t *testing.T) {
		w := watch(t)
		first := w.Get()
		w.policies.update(map[string]string{"custom.rego": policyBroken})
		eventually(t, "a failed reload", func() bool { _, f := w.reloads(t); return f >= 1 })
		if w.Get() != first {
			t.Fatal("a policy that does not compile replaced the engine")
		}

		s0, _ := w.reloads(t)
		w.policies.update(map[string]string{"custom.rego": policyTwo})
		eventually(t, "the reload of the fixed policy", func() bool { s, _ := w.reloads(t); return w.Get() != first && s > s0 })
		if mods := w.Get().Modules(); !strings.HasSuffix(mods[len(mods)-1], "custom.rego") {
			t.Errorf("modules %v do not end with the platform's custom.rego", mods)
		}
	})
}
