//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// scenarioFiles are the fixture files of a scenario, in the order they are read.
var scenarioFiles = []string{"compliant.yaml", "mutate.yaml", "mutate-expected.yaml", "rejected.yaml"}

// scenariosDir is test/scenarios, or $EGRESS_GUARD_SCENARIOS.
func scenariosDir() string {
	if dir := os.Getenv("EGRESS_GUARD_SCENARIOS"); dir != "" {
		return dir
	}
	return filepath.Join(env.root, "test", "scenarios")
}

// scenario is one directory of fixtures.
type scenario struct {
	name      string
	dir       string
	config    string
	policies  string // empty when the scenario has no policies/ directory
	compliant []*doc
	mutate    []*doc
	expected  []*doc
	rejected  []*doc
	exempt    []string // config.exemptNamespaces, defaulted
}

func loadScenario(t *testing.T, dir string) *scenario {
	t.Helper()
	s := &scenario{name: filepath.Base(dir), dir: dir, config: filepath.Join(dir, "config.yaml")}
	data, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatalf("scenario %s: %v", s.name, err)
	}
	var cfg struct {
		ExemptNamespaces *[]string `json:"exemptNamespaces"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("scenario %s: config.yaml: %v", s.name, err)
	}
	if cfg.ExemptNamespaces == nil {
		s.exempt = []string{"kube-system", "istio-system"} // the documented default
	} else {
		s.exempt = *cfg.ExemptNamespaces
	}
	if fi, err := os.Stat(filepath.Join(dir, "policies")); err == nil && fi.IsDir() {
		s.policies = filepath.Join(dir, "policies")
	}
	out := t.TempDir()
	for _, name := range scenarioFiles {
		docs, err := loadDocs(dir, name, out)
		if err != nil {
			t.Fatalf("scenario %s: %v", s.name, err)
		}
		switch name {
		case "compliant.yaml":
			s.compliant = docs
		case "mutate.yaml":
			s.mutate = docs
		case "mutate-expected.yaml":
			s.expected = docs
		case "rejected.yaml":
			s.rejected = docs
		}
	}
	return s
}

// namespaces are the namespaces of every object in the scenario.
func (s *scenario) namespaces() []string {
	set := map[string]bool{}
	for _, docs := range [][]*doc{s.compliant, s.mutate, s.expected, s.rejected} {
		for _, d := range docs {
			set[d.obj.GetNamespace()] = true
		}
	}
	var out []string
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// expectedFor returns the mutate-expected.yaml document with the same kind
// and name as d, preferring the same namespace.
func (s *scenario) expectedFor(d *doc) *doc {
	var match *doc
	for _, e := range s.expected {
		if e.obj.GetKind() != d.obj.GetKind() || e.obj.GetName() != d.obj.GetName() {
			continue
		}
		if e.obj.GetNamespace() == d.obj.GetNamespace() {
			return e
		}
		if match == nil {
			match = e
		}
	}
	return match
}

func TestScenarios(t *testing.T) {
	root := scenariosDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatalf("reading the scenarios: %v", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no scenario directories in %s", root)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runScenario(t, dir) })
	}
}

func runScenario(t *testing.T, dir string) {
	s := loadScenario(t, dir)
	ctx := context.Background()
	for _, ns := range s.namespaces() {
		if err := env.ensureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}

	g := env.startGuard(t, s.config, s.policies)
	env.useGuard(t, g)

	// Whatever this scenario stores is deleted when it ends, so that the next
	// scenario starts from a clean slate. (Cleanups run last-in first-out: this
	// one runs before the guard is stopped.)
	var created []*doc
	t.Cleanup(func() { env.deleteDocs(t, created) })
	created = append(created, s.compliant...)
	created = append(created, s.mutate...)
	created = append(created, s.rejected...)

	t.Run("endpoints", func(t *testing.T) { testEndpoints(t, g) })

	// Dry runs first: the objects must not exist yet, and must not exist after.
	t.Run("dry-run", func(t *testing.T) {
		for _, d := range s.mutate {
			t.Run("mutate_"+d.testName(), func(t *testing.T) {
				want := s.expectedFor(d)
				if want == nil {
					t.Fatalf("%s has no document with kind %s and name %s in mutate-expected.yaml (%d documents)", d, d.obj.GetKind(), d.obj.GetName(), len(s.expected))
				}
				r := env.kubectl("apply", "--dry-run=server", "-o", "json", "-f", d.path)
				if r.err != nil {
					t.Fatalf("server-side dry run of %s failed:\n%s", d, r)
				}
				var printed map[string]any
				if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil {
					t.Fatalf("server-side dry run of %s: decoding the printed object: %v\n%s", d, err, r)
				}
				checkSpec(t, "dry run of "+d.String()+" (printed object)", want.spec(), printed)
				if obj, found := env.getObject(t, d); found {
					t.Errorf("server-side dry run of %s stored the object:\n%s", d, indent(prettyJSON(obj)))
				}
			})
		}
		for _, d := range s.rejected {
			t.Run("rejected_"+d.testName(), func(t *testing.T) {
				r := env.kubectl("apply", "--dry-run=server", "-f", d.path)
				checkRejected(t, d, r)
			})
		}
	})

	t.Run("compliant", func(t *testing.T) {
		if len(s.compliant) == 0 {
			t.Skip("no compliant.yaml")
		}
		r := env.kubectl("apply", "-f", filepath.Join(s.dir, "compliant.yaml"))
		if r.err != nil {
			t.Errorf("kubectl apply of compliant.yaml failed:\n%s", r)
		} else {
			t.Logf("%s", r)
		}
		for _, d := range s.compliant {
			t.Run(d.testName(), func(t *testing.T) {
				obj, found := env.getObject(t, d)
				if !found {
					t.Fatalf("%s was not stored (see the kubectl apply output above)", d)
				}
				checkSpec(t, d.String()+" (compliant, must be stored unchanged)", d.spec(), obj)
			})
		}
	})

	t.Run("mutate", func(t *testing.T) {
		if len(s.mutate) == 0 {
			t.Skip("no mutate.yaml")
		}
		r := env.kubectl("apply", "-f", filepath.Join(s.dir, "mutate.yaml"))
		if r.err != nil {
			t.Errorf("kubectl apply of mutate.yaml failed:\n%s", r)
		} else {
			t.Logf("%s", r)
		}
		versions := map[*doc]string{}
		for _, d := range s.mutate {
			t.Run(d.testName(), func(t *testing.T) {
				want := s.expectedFor(d)
				if want == nil {
					t.Fatalf("%s has no document with kind %s and name %s in mutate-expected.yaml (%d documents)", d, d.obj.GetKind(), d.obj.GetName(), len(s.expected))
				}
				obj, found := env.getObject(t, d)
				if !found {
					t.Fatalf("%s was not stored (see the kubectl apply output above)", d)
				}
				if reflect.DeepEqual(d.spec(), want.spec()) {
					t.Errorf("fixture: %s has the same .spec as %s; a mutate.yaml object must need fixing", d, want)
				}
				checkSpec(t, d.String()+" (mutated, compared with "+want.String()+")", want.spec(), obj)
				if md, ok := obj["metadata"].(map[string]any); ok {
					versions[d], _ = md["resourceVersion"].(string)
				}
			})
		}

		// Applying the same file again is an UPDATE of the stored object; the
		// webhook fixes the file's form the same way, so the stored object
		// stays as it is.
		t.Run("reapply", func(t *testing.T) {
			r := env.kubectl("apply", "-f", filepath.Join(s.dir, "mutate.yaml"))
			if r.err != nil {
				t.Fatalf("second kubectl apply of mutate.yaml failed:\n%s", r)
			}
			for _, d := range s.mutate {
				want := s.expectedFor(d)
				if want == nil {
					continue
				}
				obj, found := env.getObject(t, d)
				if !found {
					t.Errorf("%s is gone after the second apply", d)
					continue
				}
				checkSpec(t, d.String()+" after the second apply", want.spec(), obj)
				md, _ := obj["metadata"].(map[string]any)
				if rv, _ := md["resourceVersion"].(string); versions[d] != "" && rv != versions[d] {
					t.Errorf("%s changed on the second apply (resourceVersion %s -> %s): the mutation is not stable\n%s", d, versions[d], rv, r)
				}
			}
		})
	})

	t.Run("rejected", func(t *testing.T) {
		if len(s.rejected) == 0 {
			t.Skip("no rejected.yaml")
		}
		for _, d := range s.rejected {
			t.Run(d.testName(), func(t *testing.T) {
				r := env.kubectl("apply", "-f", d.path)
				checkRejected(t, d, r)
			})
		}
	})

	// Objects that are rejected or fixed elsewhere are admitted untouched in
	// an exempt namespace. The API server never calls the webhooks for
	// kube-system (namespaceSelector), so there the guard is asked directly;
	// in the other exempt namespaces kubectl applies the objects as well.
	t.Run("exempt-namespace", func(t *testing.T) {
		if len(s.exempt) == 0 {
			t.Skip("config.yaml exempts no namespace")
		}
		if len(s.rejected)+len(s.mutate) == 0 {
			t.Skip("no rejected.yaml or mutate.yaml objects to place in an exempt namespace")
		}
		out := t.TempDir()
		for _, ns := range s.exempt {
			t.Run(ns, func(t *testing.T) {
				viaAPIServer := ns != "kube-system"
				if viaAPIServer {
					if err := env.ensureNamespace(ctx, ns); err != nil {
						t.Fatal(err)
					}
				}
				for _, src := range append(append([]*doc{}, s.rejected...), s.mutate...) {
					d, err := derive(src, out, ns, exemptName(src.obj.GetName()))
					if err != nil {
						t.Fatal(err)
					}
					t.Run(src.testName(), func(t *testing.T) {
						for _, path := range []string{"/mutate", "/validate"} {
							resp := postReview(t, g, path, reviewRequest(t, d))
							if !resp.Allowed {
								t.Errorf("POST %s for %s in exempt namespace %s: not allowed: %s", path, d, ns, compact(resp.Result))
							}
							if len(resp.Patch) > 0 {
								t.Errorf("POST %s for %s in exempt namespace %s: unexpected patch %s", path, d, ns, resp.Patch)
							}
						}
						if !viaAPIServer {
							return
						}
						t.Cleanup(func() { env.deleteDocs(t, []*doc{d}) })
						r := env.kubectl("apply", "-f", d.path)
						if r.err != nil {
							t.Fatalf("%s is in exempt namespace %s and must be admitted, but kubectl apply failed:\n%s", d, ns, r)
						}
						obj, found := env.getObject(t, d)
						if !found {
							t.Fatalf("%s was not stored", d)
						}
						checkSpec(t, d.String()+" (exempt namespace "+ns+", must be stored unchanged)", d.spec(), obj)
					})
				}
			})
		}
	})

	t.Run("unknown-kind", func(t *testing.T) { testUnknownKind(t, g) })
}

// exemptName names the copy of an object placed in an exempt namespace, so
// that it cannot collide with a scenario object living there.
func exemptName(name string) string {
	const suffix = "-exempt"
	if len(name)+len(suffix) > 253 {
		name = name[:253-len(suffix)]
	}
	return name + suffix
}

// checkRejected fails t unless r failed with every code d expects.
func checkRejected(t *testing.T, d *doc, r result) {
	t.Helper()
	codes := expectCodes(d)
	if len(codes) == 0 {
		t.Errorf("%s has no %s annotation listing the rule codes it must be rejected with", d, expectCodesAnnotation)
	}
	if r.err == nil {
		t.Fatalf("%s must be rejected with %v, but kubectl apply succeeded:\n%s", d, codes, r)
	}
	out := r.output()
	if !strings.Contains(out, "admission webhook") {
		t.Errorf("%s was refused, but not by an admission webhook:\n%s", d, r)
	}
	var missing []string
	for _, c := range codes {
		if !strings.Contains(out, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s was rejected, but kubectl's output lacks rule codes %v (expected %v):\n%s", d, missing, codes, r)
	}
	if obj, found := env.getObject(t, d); found {
		t.Errorf("%s was rejected but is stored:\n%s", d, indent(prettyJSON(obj)))
	}
}

// testEndpoints checks the health, readiness and metrics endpoints.
func testEndpoints(t *testing.T, g *guard) {
	https := env.httpsClient()
	plain := &http.Client{Timeout: https.Timeout}
	for _, c := range []struct {
		client *http.Client
		url    string
	}{
		{https, g.URL() + "/healthz"},
		{https, g.URL() + "/readyz"},
		{plain, "http://" + g.healthAddr + "/healthz"},
		{plain, "http://" + g.healthAddr + "/readyz"},
		{plain, "http://" + g.metricsAddr + "/metrics"},
	} {
		resp, err := c.client.Get(c.url)
		if err != nil {
			t.Errorf("GET %s: %v", c.url, err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s, want 200 OK: %s", c.url, resp.Status, strings.TrimSpace(string(body)))
		}
	}
}

const unknownKindNamespace = "e2e-unknown-kind"

// testUnknownKind checks that an Istio kind the guard does not police is
// admitted untouched: through the API server and kubectl, and by the
// webhook endpoints themselves when they are asked directly.
func testUnknownKind(t *testing.T, g *guard) {
	if err := env.ensureNamespace(context.Background(), unknownKindNamespace); err != nil {
		t.Fatal(err)
	}
	gateway := map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "Gateway",
		"metadata":   map[string]any{"name": "wide-open", "namespace": unknownKindNamespace},
		"spec": map[string]any{
			"selector": map[string]any{"istio": "egressgateway"},
			"servers": []any{map[string]any{
				"port":  map[string]any{"number": 80, "name": "http", "protocol": "HTTP"},
				"hosts": []any{"*"},
			}},
		},
	}
	d, err := writeDoc(t.TempDir(), "unknown-kind", gateway)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("kubectl", func(t *testing.T) {
		t.Cleanup(func() { env.deleteDocs(t, []*doc{d}) })
		r := env.kubectl("apply", "-f", d.path)
		if r.err != nil {
			t.Fatalf("kubectl apply of %s failed:\n%s", d, r)
		}
		obj, found := env.getObject(t, d)
		if !found {
			t.Fatalf("%s was not stored", d)
		}
		checkSpec(t, d.String(), d.spec(), obj)
	})

	for _, path := range []string{"/mutate", "/validate"} {
		t.Run("direct"+path, func(t *testing.T) {
			resp := postReview(t, g, path, reviewRequest(t, d))
			if !resp.Allowed {
				t.Errorf("POST %s for %s: not allowed: %s", path, d, compact(resp.Result))
			}
			if len(resp.Patch) > 0 {
				t.Errorf("POST %s for %s: unexpected patch %s", path, d, resp.Patch)
			}
		})
	}
}

// resources maps the Istio kinds to their resource names.
var resources = map[string]string{
	"ServiceEntry":    "serviceentries",
	"VirtualService":  "virtualservices",
	"DestinationRule": "destinationrules",
	"Gateway":         "gateways",
	"Sidecar":         "sidecars",
}

// reviewRequest is the CREATE request the API server would send for d.
func reviewRequest(t *testing.T, d *doc) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := d.obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	gvk := d.obj.GroupVersionKind()
	resource, ok := resources[gvk.Kind]
	if !ok {
		resource = strings.ToLower(gvk.Kind) + "s"
	}
	return &admissionv1.AdmissionRequest{
		UID:       types.UID(fmt.Sprintf("e2e-%s-%s-%s", strings.ToLower(gvk.Kind), d.obj.GetNamespace(), d.obj.GetName())),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resource},
		Name:      d.obj.GetName(),
		Namespace: d.obj.GetNamespace(),
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "e2e", Groups: []string{"system:authenticated"}},
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// postReview sends an AdmissionReview straight to the guard and returns
// its response.
func postReview(t *testing.T, g *guard, path string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	httpResp, err := env.httpsClient().Post(g.URL()+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer httpResp.Body.Close()
	data, _ := io.ReadAll(httpResp.Body)
	if httpResp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", path, httpResp.Status, data)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("POST %s: decoding the AdmissionReview: %v: %s", path, err, data)
	}
	if out.Response == nil {
		t.Fatalf("POST %s: AdmissionReview without a response: %s", path, data)
	}
	if out.Response.UID != req.UID {
		t.Errorf("POST %s: response uid %q, want %q", path, out.Response.UID, req.UID)
	}
	return out.Response
}
