package handler_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

var update = flag.Bool("update", false, "rewrite the *.golden.json files in testdata from the handlers' responses")

// scenario is the path of a file of a seed scenario, from this directory.
func scenario(name, file string) string {
	return filepath.Join("..", "..", "test", "scenarios", name, file)
}

const scenario000 = "000-http-mtls-origination"

const scenario004 = "004-per-identity-egress"

// want is what one webhook must answer, beyond the golden response: these
// expectations keep -update from blessing a wrong answer.
type want struct {
	allowed bool
	// decision is the label counted in egress_guard_admission_requests_total.
	decision string
	// patched: the response carries a JSON patch.
	patched bool
	// message holds substrings of status.message.
	message []string
	// causes are the fields of status.details.causes, in order: one per
	// denying violation.
	causes []string
	// warnings holds substrings each found in some warning.
	warnings []string
	// audit lists the auditAnnotations keys.
	audit []string
	// auditValues holds substrings each found in some auditAnnotations value.
	auditValues []string
	// knownBug says why auditValues are not all found yet: the check is
	// expected to fail, and fails the test once it passes.
	knownBug string
}

// handlerCase is one directory of testdata: review.json is sent to both
// webhooks, as the API server calls the mutating and then the validating one;
// mutate.golden.json and validate.golden.json are their AdmissionReview
// answers, with the patch decoded into its JSON operations.
type handlerCase struct {
	name string
	// config is the EgressGuardConfig ("" = testdata/<name>/config.yaml).
	config         string
	maxObjectBytes int
	mutate         want
	validate       want
	// violations are the series of egress_guard_violations_total that move,
	// as "kind code action".
	violations []string
	// storedAs is a file whose object of the same kind and name is what the
	// API server stores once the mutating patch is applied (spec compared).
	storedAs string
	// fieldNamed is the field a decoding error must name.
	fieldNamed string
}

var cases = []handlerCase{{
	name:     "se-allowed",
	config:   scenario(scenario000, "config.yaml"),
	mutate:   want{allowed: true, decision: "allowed"},
	validate: want{allowed: true, decision: "allowed"},
}, {
	name:   "se-denied-egr101",
	config: scenario(scenario000, "config.yaml"),
	mutate: want{allowed: true, decision: "allowed"},
	validate: want{causes: []string{"spec.hosts[0]"}, decision: "denied", message: []string{
		`egress-guard denied ServiceEntry default/httpbin-org: EGR101: `,
		`spec.hosts[0]: external host "httpbin.org" is not allowed for namespace "default"`,
	}},
	violations: []string{"ServiceEntry EGR101 deny"},
}, {
	name:   "vs-direct-patched",
	config: scenario(scenario000, "config.yaml"),
	mutate: want{allowed: true, decision: "patched", patched: true, warnings: []string{
		"egress-guard VirtualService default/test-com-direct: spec.http[0]: routed through the egress gateway istio-egressgateway.istio-system.svc.cluster.local:80",
	}},
	// The API server validates the patched object; the original is denied.
	validate:   want{causes: []string{"spec.http[0].route[0].destination.host"}, decision: "denied", message: []string{"EGR201", "spec.http[0].route[0].destination.host"}},
	violations: []string{"VirtualService EGR201 deny"},
	storedAs:   scenario(scenario000, "mutate-expected.yaml"),
}, {
	name:   "vs-direct-v1alpha3",
	config: scenario(scenario000, "config.yaml"),
	mutate: want{allowed: true, decision: "patched", patched: true, warnings: []string{
		"spec.http[0]: routed through the egress gateway",
	}},
	validate:   want{causes: []string{"spec.http[0].route[0].destination.host"}, decision: "denied", message: []string{"EGR201"}},
	violations: []string{"VirtualService EGR201 deny"},
	storedAs:   scenario(scenario000, "mutate-expected.yaml"),
}, {
	name:   "vs-direct-v1beta1",
	config: scenario(scenario000, "config.yaml"),
	mutate: want{allowed: true, decision: "patched", patched: true, warnings: []string{
		"spec.http[0]: routed through the egress gateway",
	}},
	validate:   want{causes: []string{"spec.http[0].route[0].destination.host"}, decision: "denied", message: []string{"EGR201"}},
	violations: []string{"VirtualService EGR201 deny"},
	storedAs:   scenario(scenario000, "mutate-expected.yaml"),
}, {
	name:     "vs-two-leg-unchanged",
	config:   scenario(scenario000, "config.yaml"),
	mutate:   want{allowed: true, decision: "allowed"},
	validate: want{allowed: true, decision: "allowed"},
}, {
	name:   "dr-no-tls-patched",
	config: scenario(scenario000, "config.yaml"),
	mutate: want{allowed: true, decision: "patched", patched: true, warnings: []string{
		`port 443 originates MUTUAL tls (credentialName "test.client", sni "test.com")`,
	}},
	validate:   want{causes: []string{"spec.trafficPolicy.tls.mode"}, decision: "denied", message: []string{"EGR303", `"MUTUAL"`}},
	violations: []string{"DestinationRule EGR303 deny"},
	storedAs:   scenario(scenario000, "mutate-expected.yaml"),
}, {
	name:   "se-export-restricted",
	config: scenario(scenario004, "config.yaml"),
	mutate: want{allowed: true, decision: "patched", patched: true, warnings: []string{
		`spec.exportTo: exported to its own namespace only`,
	}},
	// What the API server validates is the patched object: exported to curl
	// alone; the review as sent is denied.
	validate:   want{causes: []string{"spec.exportTo[0]"}, decision: "denied", message: []string{"EGR109", `"*" exports host "httpbin.org" beyond the namespaces the allow list gives it (curl)`}},
	violations: []string{"ServiceEntry EGR109 deny"},
	storedAs:   scenario(scenario004, "mutate-expected.yaml"),
}, {
	// A Pod the ReplicaSet controller writes from a template that excludes
	// every outbound range from the capture: refused by the workload rules,
	// as JSON (no Istio type), naming the annotation.
	name:       "pod-excluded-denied",
	config:     scenario(scenario000, "config.yaml"),
	mutate:     want{allowed: true, decision: "allowed"},
	validate:   want{causes: []string{`metadata.annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"]`}, decision: "denied", message: []string{"EGR501", `"0.0.0.0/0"`, "mesh-admins"}},
	violations: []string{"Pod EGR501 deny"},
}, {
	// A cluster admin who is not of the platform's group.
	name:       "sidecar-allow-any-denied",
	config:     scenario(scenario000, "config.yaml"),
	mutate:     want{allowed: true, decision: "allowed"},
	validate:   want{causes: []string{"spec.outboundTrafficPolicy.mode"}, decision: "denied", message: []string{"EGR401", `"ALLOW_ANY"`, "groups (mesh-admins)"}},
	violations: []string{"Sidecar EGR401 deny"},
}, {
	name:       "dr-insecure-denied-egr302",
	config:     scenario(scenario000, "config.yaml"),
	mutate:     want{allowed: true, decision: "allowed"},
	validate:   want{causes: []string{"spec.trafficPolicy.portLevelSettings[0].tls.insecureSkipVerify"}, decision: "denied", message: []string{"EGR302", "spec.trafficPolicy.portLevelSettings[0].tls.insecureSkipVerify", `"test.com"`}},
	violations: []string{"DestinationRule EGR302 deny"},
}, {
	name:     "exempt-namespace",
	config:   scenario(scenario000, "config.yaml"),
	mutate:   want{allowed: true, decision: "skipped", message: []string{"namespace exempt"}},
	validate: want{allowed: true, decision: "skipped", message: []string{"namespace exempt"}},
}, {
	name:     "unknown-kind-gateway",
	config:   scenario(scenario000, "config.yaml"),
	mutate:   want{allowed: true, decision: "skipped", message: []string{"kind not policed"}},
	validate: want{allowed: true, decision: "skipped", message: []string{"kind not policed"}},
}, {
	// A deletion is reviewed by the validating webhook alone, on the object
	// deleted; no rule refuses deleting this one.
	name:     "delete-operation",
	config:   scenario(scenario000, "config.yaml"),
	mutate:   want{allowed: true, decision: "skipped"},
	validate: want{allowed: true, decision: "allowed"},
}, {
	// No intent for the object: the mutating step leaves it to validation.
	name:       "malformed-hosts-string",
	config:     scenario(scenario000, "config.yaml"),
	mutate:     want{allowed: true, decision: "allowed"},
	validate:   want{decision: "denied", message: []string{"egress-guard denied ServiceEntry default/test-com: spec"}, causes: []string{"spec.hosts"}},
	fieldNamed: "spec.hosts",
}, {
	// An origination intent makes the mutating step decode the object too.
	name:       "malformed-port-eighty",
	config:     scenario(scenario000, "config.yaml"),
	mutate:     want{decision: "denied", message: []string{"egress-guard denied DestinationRule default/test-com-tls: spec"}, causes: []string{"spec.trafficPolicy.portLevelSettings[0].port.number"}},
	validate:   want{decision: "denied", message: []string{"egress-guard denied DestinationRule default/test-com-tls: spec"}, causes: []string{"spec.trafficPolicy.portLevelSettings[0].port.number"}},
	fieldNamed: "spec.trafficPolicy.portLevelSettings[0].port.number",
}, {
	name:           "object-too-large",
	config:         scenario(scenario000, "config.yaml"),
	maxObjectBytes: 2048,
	mutate:         want{decision: "denied", message: []string{"ServiceEntry default/httpbin-org", "over the 2048-byte limit"}},
	validate:       want{decision: "denied", message: []string{"ServiceEntry default/httpbin-org", "over the 2048-byte limit"}},
}, {
	name:   "warn-enforcement",
	mutate: want{allowed: true, decision: "allowed"},
	validate: want{allowed: true, decision: "allowed", warnings: []string{`egress-guard ServiceEntry default/httpbin-org: EGR101: spec.hosts[0]: external host "httpbin.org"`},
		audit: []string{"warn.egr101.0"}, auditValues: []string{`"httpbin.org"`}},
	violations: []string{"ServiceEntry EGR101 warn"},
}, {
	name: "dryrun-enforcement",
	// A dry run is silent for the user: recorded in audit annotations.
	mutate: want{allowed: true, decision: "dryrun", audit: []string{"dryrun.egr303.intent", "dryrun.patch"},
		auditValues: []string{`port 443 originates MUTUAL tls`, `"path":"/spec/trafficPolicy/portLevelSettings"`}},
	validate:   want{allowed: true, decision: "dryrun", audit: []string{"dryrun.egr303.0"}, auditValues: []string{`"MUTUAL"`}},
	violations: []string{"DestinationRule EGR303 dryrun"},
}, {
	// Under warn a mutation is applied, with a warning, and recorded.
	name: "warn-mutation",
	mutate: want{allowed: true, decision: "patched", patched: true,
		warnings: []string{"egress-guard VirtualService default/test-com-direct: spec.http[0]: routed through the egress gateway"},
		audit:    []string{"warn.egr201.intent"}, auditValues: []string{"routed through the egress gateway"}},
	validate: want{allowed: true, decision: "allowed", warnings: []string{"egress-guard VirtualService default/test-com-direct: EGR201: spec.http[0].route[0].destination.host"},
		audit: []string{"warn.egr201.0"}, auditValues: []string{"must go through the egress gateway"}},
	violations: []string{"VirtualService EGR201 warn"},
}, {
	// One rule in dry run for the namespace: its mutation is recorded, not
	// applied, and its violation admitted.
	name: "override-per-rule",
	mutate: want{allowed: true, decision: "dryrun", audit: []string{"dryrun.egr201.intent", "dryrun.patch"},
		auditValues: []string{"routed through the egress gateway", `"path":"/spec/http/0/route/0/destination/host"`}},
	validate:   want{allowed: true, decision: "dryrun", audit: []string{"dryrun.egr201.0"}, auditValues: []string{"must go through the egress gateway"}},
	violations: []string{"VirtualService EGR201 dryrun"},
}, {
	name:   "dryrun-two-hosts",
	mutate: want{allowed: true, decision: "allowed"},
	validate: want{allowed: true, decision: "dryrun", audit: []string{"dryrun.egr101.0", "dryrun.egr101.1"},
		auditValues: []string{`"httpbin.org"`, `"httpstat.us"`},
	},
	violations: []string{"ServiceEntry EGR101 dryrun", "ServiceEntry EGR101 dryrun"},
}, {
	// An admission.k8s.io/v1beta1 review is answered in kind.
	name:       "review-v1beta1",
	config:     scenario(scenario000, "config.yaml"),
	mutate:     want{allowed: true, decision: "allowed"},
	validate:   want{causes: []string{"spec.hosts[0]"}, decision: "denied", message: []string{`EGR101: spec.hosts[0]: external host "httpbin.org"`}},
	violations: []string{"ServiceEntry EGR101 deny"},
}, {
	// An update that turns the two legs back into a direct route.
	name:   "vs-update-patched",
	config: scenario(scenario000, "config.yaml"),
	mutate: want{allowed: true, decision: "patched", patched: true, warnings: []string{
		"spec.http[0]: routed through the egress gateway",
	}},
	validate:   want{causes: []string{"spec.http[0].route[0].destination.host"}, decision: "denied", message: []string{"EGR201"}},
	violations: []string{"VirtualService EGR201 deny"},
	storedAs:   scenario(scenario000, "mutate-expected.yaml"),
}}

func TestHandlersReplayReviews(t *testing.T) {
	dirs, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		if d.IsDir() {
			names = append(names, d.Name())
		}
	}
	var listed []string
	for _, c := range cases {
		listed = append(listed, c.name)
	}
	slices.Sort(listed)
	if !slices.Equal(names, listed) {
		t.Fatalf("testdata directories %v and the cases %v differ", names, listed)
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join("testdata", c.name)
			review := readFile(t, filepath.Join(dir, "review.json"))
			reg := prometheus.NewRegistry()
			h := newHandlers(t, loadEngine(t, c.configPath()), metrics.New(reg), c.maxObjectBytes)

			mutated := h.post(t, h.mutate, review)
			validated := h.post(t, h.validate, review)
			uid := requestUID(t, review)
			reviewVersion := requestAPIVersion(t, review)
			for _, r := range []struct {
				webhook string
				resp    *reviewResponse
				want    want
			}{{"mutate", mutated, c.mutate}, {"validate", validated, c.validate}} {
				t.Run(r.webhook, func(t *testing.T) {
					r.resp.check(t, reviewVersion, uid, r.want)
					if c.fieldNamed != "" && !r.resp.Response.Allowed {
						if msg := r.resp.message(); !strings.Contains(msg, c.fieldNamed+": ") {
							t.Errorf("message %q does not name the field %s", msg, c.fieldNamed)
						}
					}
					compareGolden(t, filepath.Join(dir, r.webhook+".golden.json"), r.resp.golden(t))
				})
			}

			group, kind := requestKind(t, review)
			cfg, err := config.LoadFile(c.configPath())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cfg.Policed(group, kind); !ok {
				kind = "other" // a bounded label
			}
			op := requestOperation(t, review)
			wantRequests := map[string]float64{
				series("webhook", "mutate", "kind", kind, "operation", op, "decision", c.mutate.decision):     1,
				series("webhook", "validate", "kind", kind, "operation", op, "decision", c.validate.decision): 1,
			}
			if got := counters(t, reg, "egress_guard_admission_requests_total"); !reflect.DeepEqual(got, wantRequests) {
				t.Errorf("egress_guard_admission_requests_total:\n got %v\nwant %v", got, wantRequests)
			}
			wantViolations := map[string]float64{}
			for _, v := range c.violations {
				f := strings.Fields(v)
				wantViolations[series("kind", f[0], "code", f[1], "action", f[2])]++
			}
			if got := counters(t, reg, "egress_guard_violations_total"); !reflect.DeepEqual(got, wantViolations) {
				t.Errorf("egress_guard_violations_total:\n got %v\nwant %v", got, wantViolations)
			}

			if mutated.patched() {
				checkPatchedObject(t, h, review, mutated, c.storedAs)
			}
		})
	}
}

// The three Istio API versions share one schema: a VirtualService decodes,
// evaluates and patches the same whatever its apiVersion.
func TestAPIVersionsDecodeTheSame(t *testing.T) {
	h := newHandlers(t, loadEngine(t, scenario(scenario000, "config.yaml")), metrics.New(prometheus.NewRegistry()), 0)
	var first []byte
	for _, c := range []struct{ dir, apiVersion string }{
		{"vs-direct-patched", "networking.istio.io/v1"},
		{"vs-direct-v1alpha3", "networking.istio.io/v1alpha3"},
		{"vs-direct-v1beta1", "networking.istio.io/v1beta1"},
	} {
		review := readFile(t, filepath.Join("testdata", c.dir, "review.json"))
		var obj struct {
			APIVersion string `json:"apiVersion"`
		}
		if err := json.Unmarshal(requestField(t, review, "object"), &obj); err != nil {
			t.Fatal(err)
		}
		if obj.APIVersion != c.apiVersion {
			t.Fatalf("%s: the review's object is %s, want %s", c.dir, obj.APIVersion, c.apiVersion)
		}
		var answers []byte
		for _, wh := range []*admission.Webhook{h.mutate, h.validate} {
			r := h.post(t, wh, review)
			r.Response.UID = ""
			answers = append(answers, r.golden(t)...)
		}
		if first == nil {
			first = answers
			continue
		}
		if !bytes.Equal(first, answers) {
			t.Errorf("%s answers differently from %s:\n%s", c.apiVersion, "networking.istio.io/v1", diff(first, answers))
		}
	}
}

// A request whose engine fails to evaluate is an error left to the webhook's
// failurePolicy, not a denial: a platform policy returning an unknown action.
func TestEvaluationErrorIsErrored(t *testing.T) {
	dir := t.TempDir()
	policy := `package egressguard.rules.broken

deny contains {"code": "EGR900", "message": "always", "action": "block"} if true
`
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(scenario(scenario000, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(context.Background(), engine.Options{Config: cfg, PolicyDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := newHandlers(t, e, metrics.New(reg), 0)
	review := readFile(t, filepath.Join("testdata", "se-allowed", "review.json"))
	r := h.post(t, h.validate, review)
	if r.Response.Allowed || r.Response.Result == nil || r.Response.Result.Code != http.StatusInternalServerError {
		t.Fatalf("want an errored response (code 500), got %s", r.golden(t))
	}
	if msg := r.message(); !strings.Contains(msg, "ServiceEntry default/test-com") || !strings.Contains(msg, `unknown action "block"`) {
		t.Errorf("message %q does not name the object and the cause", msg)
	}
	want := map[string]float64{series("webhook", "validate", "kind", "ServiceEntry", "operation", "CREATE", "decision", "error"): 1}
	if got := counters(t, reg, "egress_guard_admission_requests_total"); !reflect.DeepEqual(got, want) {
		t.Errorf("egress_guard_admission_requests_total:\n got %v\nwant %v", got, want)
	}
}

// The engine is read per request: a reload between two requests applies to
// the second.
func TestEngineReadPerRequest(t *testing.T) {
	deny := loadEngine(t, scenario(scenario000, "config.yaml"))
	warn := loadEngine(t, filepath.Join("testdata", "warn-enforcement", "config.yaml"))
	current := deny
	h := &handler.Validating{Deps: handler.Deps{
		Engine:  func() guard.Engine { return current },
		Metrics: metrics.New(prometheus.NewRegistry()),
		Log:     testr.New(t),
	}}
	wh := &admission.Webhook{Handler: h, LogConstructor: discardLog}
	srv := httptest.NewServer(wh)
	t.Cleanup(srv.Close)
	review := readFile(t, filepath.Join("testdata", "se-denied-egr101", "review.json"))
	if r := post(t, srv.URL, review); r.Response.Allowed {
		t.Fatalf("deny enforcement: want denied, got %s", r.golden(t))
	}
	current = warn
	if r := post(t, srv.URL, review); !r.Response.Allowed || len(r.Response.Warnings) != 1 {
		t.Fatalf("warn enforcement: want allowed with one warning, got %s", r.golden(t))
	}
}

func (c handlerCase) configPath() string {
	if c.config != "" {
		return c.config
	}
	return filepath.Join("testdata", c.name, "config.yaml")
}

type handlers struct {
	mutate, validate *admission.Webhook
	servers          map[*admission.Webhook]string
}

func newHandlers(t *testing.T, e *engine.Engine, m *metrics.Metrics, maxObjectBytes int) *handlers {
	t.Helper()
	deps := handler.Deps{
		Engine:         func() guard.Engine { return e },
		Metrics:        m,
		Log:            testr.New(t),
		MaxObjectBytes: maxObjectBytes,
	}
	h := &handlers{
		mutate:   &admission.Webhook{Handler: &handler.Mutating{Deps: deps}, LogConstructor: discardLog},
		validate: &admission.Webhook{Handler: &handler.Validating{Deps: deps}, LogConstructor: discardLog},
		servers:  map[*admission.Webhook]string{},
	}
	for _, wh := range []*admission.Webhook{h.mutate, h.validate} {
		srv := httptest.NewServer(wh)
		t.Cleanup(srv.Close)
		h.servers[wh] = srv.URL
	}
	return h
}

func discardLog(logr.Logger, *admission.Request) logr.Logger { return logr.Discard() }

func (h *handlers) post(t *testing.T, wh *admission.Webhook, review []byte) *reviewResponse {
	t.Helper()
	return post(t, h.servers[wh], review)
}

// reviewResponse is the AdmissionReview a webhook answers, as the API server
// reads it.
type reviewResponse struct {
	raw        []byte
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Response   *admissionResponse `json:"response"`
}

type admissionResponse struct {
	UID     string `json:"uid"`
	Allowed bool   `json:"allowed"`
	Result  *struct {
		Code    int32  `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Details *struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	} `json:"status"`
	Patch            []byte            `json:"patch"`
	PatchType        *string           `json:"patchType"`
	Warnings         []string          `json:"warnings"`
	AuditAnnotations map[string]string `json:"auditAnnotations"`
}

func post(t *testing.T, url string, review []byte) *reviewResponse {
	t.Helper()
	res, err := http.Post(url, "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", res.StatusCode, body)
	}
	r := &reviewResponse{raw: body}
	if err := json.Unmarshal(body, r); err != nil {
		t.Fatalf("the answer is not an AdmissionReview: %v\n%s", err, body)
	}
	if r.Response == nil {
		t.Fatalf("the AdmissionReview has no response:\n%s", body)
	}
	return r
}

func (r *reviewResponse) message() string {
	if r.Response.Result == nil {
		return ""
	}
	return r.Response.Result.Message
}

func (r *reviewResponse) patched() bool { return len(r.Response.Patch) > 0 }

// check compares the answer with what the case wants.
func (r *reviewResponse) check(t *testing.T, apiVersion, uid string, w want) {
	t.Helper()
	resp := r.Response
	if r.Kind != "AdmissionReview" || r.APIVersion != apiVersion {
		t.Errorf("answered a %s %s, want the review's %s AdmissionReview", r.APIVersion, r.Kind, apiVersion)
	}
	if resp.UID != uid {
		t.Errorf("response uid %q, want the request's %q", resp.UID, uid)
	}
	if resp.Allowed != w.allowed {
		t.Errorf("allowed = %v, want %v (message %q)", resp.Allowed, w.allowed, r.message())
	}
	if !w.allowed {
		if resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Result.Reason != "Forbidden" {
			t.Errorf("a denial must carry status code 403, reason Forbidden: got %s", r.raw)
		}
	}
	for _, s := range w.message {
		if !strings.Contains(r.message(), s) {
			t.Errorf("message %q does not contain %q", r.message(), s)
		}
	}
	var fields []string
	if resp.Result != nil && resp.Result.Details != nil {
		for _, c := range resp.Result.Details.Causes {
			fields = append(fields, c.Field)
			// A cause is a violation of the one-line message, "CODE:
			// field: text", as a field error: the field apart, "CODE: text";
			// or the decoding error, "field: text", the field apart.
			code, text, _ := strings.Cut(c.Message, ": ")
			violation := strings.Contains(r.message(), code+": "+c.Field+": "+text)
			decoding := strings.Contains(r.message(), ": "+c.Field+": "+c.Message)
			if c.Reason != "FieldValueInvalid" || !(violation || decoding) {
				t.Errorf("cause %+v: want reason FieldValueInvalid and a violation or the decoding error of the message %q", c, r.message())
			}
		}
	}
	if !slices.Equal(fields, w.causes) {
		t.Errorf("status.details.causes name the fields %q, want %q", fields, w.causes)
	}
	if got := r.patched(); got != w.patched {
		t.Errorf("patched = %v, want %v", got, w.patched)
	}
	if w.patched != (resp.PatchType != nil) || (resp.PatchType != nil && *resp.PatchType != "JSONPatch") {
		t.Errorf("patchType %v with patched = %v", resp.PatchType, w.patched)
	}
	for _, s := range w.warnings {
		if !slices.ContainsFunc(resp.Warnings, func(x string) bool { return strings.Contains(x, s) }) {
			t.Errorf("no warning contains %q: %q", s, resp.Warnings)
		}
	}
	if len(w.warnings) == 0 && len(resp.Warnings) > 0 {
		t.Errorf("unexpected warnings %q", resp.Warnings)
	}
	var keys []string
	for k := range resp.AuditAnnotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, w.audit) {
		t.Errorf("auditAnnotations keys %v, want %v", keys, w.audit)
	}
	var missing []string
	for _, s := range w.auditValues {
		found := false
		for _, v := range resp.AuditAnnotations {
			found = found || strings.Contains(v, s)
		}
		if !found {
			missing = append(missing, s)
		}
	}
	switch {
	case len(missing) > 0 && w.knownBug == "":
		t.Errorf("no auditAnnotations value contains %q: %q", missing, resp.AuditAnnotations)
	case len(missing) > 0:
		t.Logf("known bug (%s): no auditAnnotations value contains %q: %q", w.knownBug, missing, resp.AuditAnnotations)
	case w.knownBug != "":
		t.Errorf("fixed: the auditAnnotations %q now record %q; drop knownBug from the case", resp.AuditAnnotations, w.auditValues)
	}
}

// golden is the answer as kept in testdata: the AdmissionReview with its
// base64 patch decoded into JSON operations, listed in path order (the patch
// library emits the operations on an object's keys in map order).
func (r *reviewResponse) golden(t *testing.T) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(r.raw, &doc); err != nil {
		t.Fatal(err)
	}
	resp := doc["response"].(map[string]any)
	if r.Response.UID == "" {
		delete(resp, "uid")
	}
	if p, ok := resp["patch"].(string); ok {
		raw, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			t.Fatalf("patch is not base64: %v", err)
		}
		var ops []map[string]any
		if err := json.Unmarshal(raw, &ops); err != nil {
			t.Fatalf("patch is not a JSON patch: %v\n%s", err, raw)
		}
		sort.SliceStable(ops, func(i, j int) bool { return pathLess(ops[i]["path"].(string), ops[j]["path"].(string)) })
		resp["patch"] = ops
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// pathLess orders JSON pointers segment by segment, array indices by number.
func pathLess(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx == nil && erry == nil {
			return x < y
		}
		return as[i] < bs[i]
	}
	return len(as) < len(bs)
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	var g, w any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("the answer differs from %s (go test -update rewrites it):\n%s", path, diff(want, got))
	}
}

func diff(a, b []byte) string {
	s, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(a)), B: difflib.SplitLines(string(b)),
		FromFile: "want", ToFile: "got", Context: 3,
	})
	return s
}

// checkPatchedObject applies the patch to the object the API server sent, as
// the API server does, and checks the result: it decodes, it is what the
// scenario says is stored, a second mutating pass leaves it alone and the
// validating webhook admits it.
func checkPatchedObject(t *testing.T, h *handlers, review []byte, resp *reviewResponse, storedAs string) {
	t.Helper()
	patch, err := jsonpatchapply.DecodePatch(resp.Response.Patch)
	if err != nil {
		t.Fatalf("decoding the patch: %v", err)
	}
	obj := requestField(t, review, "object")
	patched, err := patch.Apply(obj)
	if err != nil {
		t.Fatalf("the patch does not apply to request.object: %v\npatch: %s", err, resp.Response.Patch)
	}

	if storedAs != "" {
		want := storedObject(t, storedAs, patched)
		var got map[string]any
		if err := json.Unmarshal(patched, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got["spec"], want["spec"]) {
			g, _ := json.MarshalIndent(got["spec"], "", "  ")
			w, _ := json.MarshalIndent(want["spec"], "", "  ")
			t.Errorf("patched spec differs from %s:\n%s", storedAs, diff(w, g))
		}
	}

	var doc map[string]any
	if err := json.Unmarshal(review, &doc); err != nil {
		t.Fatal(err)
	}
	req := doc["request"].(map[string]any)
	req["object"] = json.RawMessage(patched)
	req["uid"] = req["uid"].(string) + "-again"
	again, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if r := h.post(t, h.mutate, again); !r.Response.Allowed || r.patched() {
		t.Errorf("a second mutating pass over the patched object: want allowed without patch, got %s", r.golden(t))
	}
	if r := h.post(t, h.validate, again); !r.Response.Allowed || len(r.Response.Warnings) > 0 {
		t.Errorf("validating the patched object: want allowed without warnings, got %s", r.golden(t))
	}
}

// storedObject finds, in a multi-document YAML file, the object of the same
// kind and name as obj.
func storedObject(t *testing.T, path string, obj []byte) map[string]any {
	t.Helper()
	var id struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &id); err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(readFile(t, path)), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		md, _ := m["metadata"].(map[string]any)
		if m["kind"] == id.Kind && md != nil && md["name"] == id.Metadata.Name {
			return m
		}
	}
	t.Fatalf("%s has no %s %s", path, id.Kind, id.Metadata.Name)
	return nil
}

func loadEngine(t testing.TB, configPath string) *engine.Engine {
	t.Helper()
	cfg, err := config.LoadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(context.Background(), engine.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func requestField(t *testing.T, review []byte, field string) []byte {
	t.Helper()
	var doc struct {
		Request map[string]json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(review, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Request[field]
}

func requestUID(t *testing.T, review []byte) string {
	t.Helper()
	var uid string
	if err := json.Unmarshal(requestField(t, review, "uid"), &uid); err != nil {
		t.Fatal(err)
	}
	return uid
}

func requestAPIVersion(t *testing.T, review []byte) string {
	t.Helper()
	var doc struct {
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(review, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.APIVersion
}

func requestOperation(t *testing.T, review []byte) string {
	t.Helper()
	var op string
	if err := json.Unmarshal(requestField(t, review, "operation"), &op); err != nil {
		t.Fatal(err)
	}
	return op
}

func requestKind(t *testing.T, review []byte) (group, kind string) {
	t.Helper()
	var k struct {
		Group string `json:"group"`
		Kind  string `json:"kind"`
	}
	if err := json.Unmarshal(requestField(t, review, "kind"), &k); err != nil {
		t.Fatal(err)
	}
	return k.Group, k.Kind
}

// series names a series by its labels, sorted.
func series(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// counters reads the series of counter name from reg.
func counters(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName(), l.GetValue())
			}
			out[series(kv...)] = m.GetCounter().GetValue()
		}
	}
	return out
}

// An operation the handlers do not know is never admitted unevaluated, even
// without the server's check in front: each webhook answers it with an
// error naming the operation.
func TestUnknownOperationIsRefused(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHandlers(t, loadEngine(t, scenario(scenario000, "config.yaml")), metrics.New(reg), 0)
	review := bytes.Replace(readFile(t, filepath.Join("testdata", "se-allowed", "review.json")), []byte(`"operation": "CREATE"`), []byte(`"operation": "BOGUS"`), 1)
	if bytes.Contains(review, []byte(`"CREATE"`)) {
		t.Fatal("the review still says CREATE")
	}
	for _, wh := range []*admission.Webhook{h.mutate, h.validate} {
		r := h.post(t, wh, review)
		if r.Response.Allowed || r.Response.Result == nil || r.Response.Result.Code != http.StatusBadRequest {
			t.Errorf("want an error (code 400), got %s", r.golden(t))
		}
		if msg := r.message(); !strings.Contains(msg, `ServiceEntry default/test-com: unknown operation "BOGUS"`) {
			t.Errorf("message %q does not name the object and the operation", msg)
		}
	}
	want := map[string]float64{
		series("webhook", "mutate", "kind", "ServiceEntry", "operation", "unknown", "decision", "error"):   1,
		series("webhook", "validate", "kind", "ServiceEntry", "operation", "unknown", "decision", "error"): 1,
	}
	if got := counters(t, reg, "egress_guard_admission_requests_total"); !reflect.DeepEqual(got, want) {
		t.Errorf("egress_guard_admission_requests_total:\n got %v\nwant %v", got, want)
	}
}
