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
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/egress-guard/egress-guard/test/harness"
)

// scenariosDir is test/scenarios, or $EGRESS_GUARD_SCENARIOS.
func scenariosDir() string {
	if dir := os.Getenv("EGRESS_GUARD_SCENARIOS"); dir != "" {
		return dir
	}
	return filepath.Join(env.Root, "test", "scenarios")
}

func TestScenarios(t *testing.T) {
	dirs, err := harness.ScenarioDirs(scenariosDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runScenario(t, dir) })
	}
}

func runScenario(t *testing.T, dir string) {
	s, err := harness.LoadScenario(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range s.Namespaces() {
		env.ensureNamespace(t, ns)
	}

	// With the cluster model, as the chart runs serve: compliant.yaml is
	// the platform's setup, applied first, and mutate.yaml's and
	// rejected.yaml's objects are judged in its world (as
	// test/scenarios judges them offline).
	g := env.startGuard(t, s.Config, s.Policies, "--inventory")
	env.useGuard(t, g)

	// Whatever this scenario stores is deleted when it ends, so that the next
	// scenario starts from a clean slate. (Cleanups run last-in first-out: this
	// one runs before the guard is stopped.)
	var created []*harness.Doc
	t.Cleanup(func() { env.deleteDocs(t, created) })
	created = append(created, s.Compliant...)
	created = append(created, s.Mutate...)
	created = append(created, s.Rejected...)

	t.Run("endpoints", func(t *testing.T) { testEndpoints(t, g) })

	t.Run("compliant", func(t *testing.T) {
		updates, err := g.ModelUpdates()
		if err != nil {
			t.Fatal(err)
		}
		applyFile(t, s, "compliant.yaml", s.Compliant)
		for _, d := range s.Compliant {
			t.Run(testName(d), func(t *testing.T) {
				obj, found := env.getObject(t, d)
				if !found {
					t.Fatalf("%s was not stored (see the kubectl apply output above)", d)
				}
				checkSpec(t, d.String()+" (compliant, must be stored unchanged)", d.Spec(), obj)
			})
		}
		if err := g.WaitForModel(context.Background(), updates, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	// Dry runs next: the objects must not exist yet, and must not exist
	// after.
	t.Run("dry-run", func(t *testing.T) {
		for _, d := range s.Mutate {
			t.Run("mutate_"+testName(d), func(t *testing.T) {
				want := expectedFor(t, s, d)
				r := env.kubectl("apply", "--dry-run=server", "-o", "json", "-f", d.Path)
				if r.Err != nil {
					t.Fatalf("server-side dry run of %s failed:\n%s", d, r)
				}
				var printed map[string]any
				if err := json.Unmarshal([]byte(r.Stdout), &printed); err != nil {
					t.Fatalf("server-side dry run of %s: decoding the printed object: %v\n%s", d, err, r)
				}
				checkSpec(t, "dry run of "+d.String()+" (printed object)", want.Spec(), printed)
				if obj, found := env.getObject(t, d); found {
					t.Errorf("server-side dry run of %s stored the object:\n%s", d, indent(prettyJSON(obj)))
				}
			})
		}
		for _, d := range s.Rejected {
			t.Run("rejected_"+testName(d), func(t *testing.T) {
				r := env.kubectl("apply", "--dry-run=server", "-f", d.Path)
				checkRejected(t, d, r)
				checkCauses(t, d)
			})
		}
	})

	t.Run("mutate", func(t *testing.T) {
		applyFile(t, s, "mutate.yaml", s.Mutate)
		versions := map[*harness.Doc]string{}
		for _, d := range s.Mutate {
			t.Run(testName(d), func(t *testing.T) {
				want := expectedFor(t, s, d)
				obj, found := env.getObject(t, d)
				if !found {
					t.Fatalf("%s was not stored (see the kubectl apply output above)", d)
				}
				if reflect.DeepEqual(d.Spec(), want.Spec()) {
					t.Errorf("fixture: %s has the same .spec as %s; a mutate.yaml object must need fixing", d, want)
				}
				checkSpec(t, d.String()+" (mutated, compared with "+want.String()+")", want.Spec(), obj)
				if md, ok := obj["metadata"].(map[string]any); ok {
					versions[d], _ = md["resourceVersion"].(string)
				}
			})
		}

		// Applying the same file again is an UPDATE of the stored object; the
		// webhook fixes the file's form the same way, so the stored object
		// stays as it is.
		t.Run("reapply", func(t *testing.T) {
			r := env.kubectl("apply", "-f", filepath.Join(s.Dir, "mutate.yaml"))
			if r.Err != nil {
				t.Fatalf("second kubectl apply of mutate.yaml failed:\n%s", r)
			}
			for _, d := range s.Mutate {
				want := s.ExpectedFor(d)
				if want == nil {
					continue
				}
				obj, found := env.getObject(t, d)
				if !found {
					t.Errorf("%s is gone after the second apply", d)
					continue
				}
				checkSpec(t, d.String()+" after the second apply", want.Spec(), obj)
				md, _ := obj["metadata"].(map[string]any)
				if rv, _ := md["resourceVersion"].(string); versions[d] != "" && rv != versions[d] {
					t.Errorf("%s changed on the second apply (resourceVersion %s -> %s): the mutation is not stable\n%s", d, versions[d], rv, r)
				}
			}
		})
	})

	t.Run("rejected", func(t *testing.T) {
		if len(s.Rejected) == 0 {
			t.Fatal("the scenario has no rejected.yaml objects")
		}
		for _, d := range s.Rejected {
			t.Run(testName(d), func(t *testing.T) {
				r := env.kubectl("apply", "-f", d.Path)
				checkRejected(t, d, r)
			})
		}
	})

	// Objects that are rejected or fixed elsewhere are admitted untouched in
	// an exempt namespace. The API server never calls the webhooks for
	// kube-system (namespaceSelector), so there the guard is asked directly;
	// in the other exempt namespaces kubectl applies the objects as well.
	t.Run("exempt-namespace", func(t *testing.T) {
		if len(s.Exempt) == 0 {
			t.Fatal("config.yaml exempts no namespace (kube-system at least)")
		}
		if len(s.Rejected)+len(s.Mutate) == 0 {
			t.Fatal("no rejected.yaml or mutate.yaml objects to place in an exempt namespace")
		}
		out := t.TempDir()
		for _, ns := range s.Exempt {
			t.Run(ns, func(t *testing.T) {
				viaAPIServer := ns != "kube-system"
				if viaAPIServer {
					env.ensureNamespace(t, ns)
				}
				for _, src := range append(append([]*harness.Doc{}, s.Rejected...), s.Mutate...) {
					d, err := derive(src, out, ns, exemptName(src.Obj.GetName()))
					if err != nil {
						t.Fatal(err)
					}
					t.Run(testName(src), func(t *testing.T) {
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
						t.Cleanup(func() { env.deleteDocs(t, []*harness.Doc{d}) })
						r := env.kubectl("apply", "-f", d.Path)
						if r.Err != nil {
							t.Fatalf("%s is in exempt namespace %s and must be admitted, but kubectl apply failed:\n%s", d, ns, r)
						}
						obj, found := env.getObject(t, d)
						if !found {
							t.Fatalf("%s was not stored", d)
						}
						checkSpec(t, d.String()+" (exempt namespace "+ns+", must be stored unchanged)", d.Spec(), obj)
					})
				}
			})
		}
	})

	t.Run("unknown-kind", func(t *testing.T) { testUnknownKind(t, g) })
}

// applyFile applies the scenario file name whole, as a user would; t is
// a scenario without objects in the file is broken.
func applyFile(t *testing.T, s *harness.Scenario, name string, docs []*harness.Doc) {
	t.Helper()
	if len(docs) == 0 {
		t.Fatal("the scenario has no " + name + " objects")
	}
	r := env.kubectl("apply", "-f", filepath.Join(s.Dir, name))
	if r.Err != nil {
		t.Errorf("kubectl apply of %s failed:\n%s", name, r)
	} else {
		t.Logf("%s", r)
	}
}

// expectedFor returns the mutate-expected.yaml form of d, or fails t.
func expectedFor(t *testing.T, s *harness.Scenario, d *harness.Doc) *harness.Doc {
	t.Helper()
	want := s.ExpectedFor(d)
	if want == nil {
		t.Fatalf("%s has no document with kind %s and name %s in mutate-expected.yaml (%d documents)", d, d.Obj.GetKind(), d.Obj.GetName(), len(s.Expected))
	}
	return want
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

// checkCauses creates d through client-go (a server-side dry run) and checks
// the denial as a client reads it: Forbidden, with a status cause per
// expected rule code, each naming a field.
func checkCauses(t *testing.T, d *harness.Doc) {
	t.Helper()
	gv, err := schema.ParseGroupVersion(d.Obj.GetAPIVersion())
	if err != nil {
		t.Fatal(err)
	}
	resource := strings.ToLower(d.Obj.GetKind()) + "s" // the Istio kinds' plurals
	if r, ok := strings.CutSuffix(resource, "ys"); ok {
		resource = r + "ies"
	}
	gvr := gv.WithResource(resource)
	_, err = env.Dynamic.Resource(gvr).Namespace(d.Obj.GetNamespace()).Create(context.Background(), d.Obj.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("%s: want a Forbidden denial, got %v", d, err)
	}
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		t.Fatalf("%s: the denial has no details: %v", d, err)
	}
	for _, code := range d.ExpectCodes() {
		found := false
		for _, c := range status.Status().Details.Causes {
			found = found || (strings.HasPrefix(c.Message, code+": ") && c.Field != "" && c.Type == metav1.CauseTypeFieldValueInvalid)
		}
		if !found {
			t.Errorf("%s: no status cause with a field for %s: %+v", d, code, status.Status().Details.Causes)
		}
	}
}

// checkRejected fails t unless r failed with every code d expects.
func checkRejected(t *testing.T, d *harness.Doc, r harness.Result) {
	t.Helper()
	codes := d.ExpectCodes()
	if len(codes) == 0 {
		t.Errorf("%s has no %s annotation listing the rule codes it must be rejected with", d, harness.ExpectCodesAnnotation)
	}
	if r.Err == nil {
		t.Fatalf("%s must be rejected with %v, but kubectl apply succeeded:\n%s", d, codes, r)
	}
	out := r.Output()
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
func testEndpoints(t *testing.T, g *harness.Guard) {
	https := env.certs.HTTPClient()
	plain := &http.Client{Timeout: https.Timeout}
	for _, c := range []struct {
		client *http.Client
		url    string
	}{
		{https, g.URL() + "/healthz"},
		{https, g.URL() + "/readyz"},
		{plain, "http://" + g.HealthAddr + "/healthz"},
		{plain, "http://" + g.HealthAddr + "/readyz"},
		{plain, "http://" + g.MetricsAddr + "/metrics"},
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
func testUnknownKind(t *testing.T, g *harness.Guard) {
	env.ensureNamespace(t, unknownKindNamespace)
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
	d, err := harness.NewDoc(t.TempDir(), "unknown-kind", 0, &unstructured.Unstructured{Object: gateway})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("kubectl", func(t *testing.T) {
		t.Cleanup(func() { env.deleteDocs(t, []*harness.Doc{d}) })
		r := env.kubectl("apply", "-f", d.Path)
		if r.Err != nil {
			t.Fatalf("kubectl apply of %s failed:\n%s", d, r)
		}
		obj, found := env.getObject(t, d)
		if !found {
			t.Fatalf("%s was not stored", d)
		}
		checkSpec(t, d.String(), d.Spec(), obj)
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
func reviewRequest(t *testing.T, d *harness.Doc) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := d.Obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	gvk := d.Obj.GroupVersionKind()
	resource, ok := resources[gvk.Kind]
	if !ok {
		resource = strings.ToLower(gvk.Kind) + "s"
	}
	return &admissionv1.AdmissionRequest{
		UID:       types.UID(fmt.Sprintf("e2e-%s-%s-%s", strings.ToLower(gvk.Kind), d.Obj.GetNamespace(), d.Obj.GetName())),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resource},
		Name:      d.Obj.GetName(),
		Namespace: d.Obj.GetNamespace(),
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "e2e", Groups: []string{"system:authenticated"}},
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// postReview sends an AdmissionReview straight to the guard and returns
// its response.
func postReview(t *testing.T, g *harness.Guard, path string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	httpResp, err := env.certs.HTTPClient().Post(g.URL()+path, "application/json", bytes.NewReader(body))
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
