//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/test/harness"
	"github.com/egress-guard/egress-guard/webhook/config"
)

const (
	auditNamespace = "audit-e2e"
	// staleNamespace holds reports of an earlier audit and no objects.
	staleNamespace = "audit-e2e-stale"
)

var (
	reportsGVR       = schema.GroupVersionResource{Group: "openreports.io", Version: "v1alpha1", Resource: "reports"}
	policyReportsGVR = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
)

// auditConfigs writes scenario 000's configuration, with the audit
// namespace allowed wherever "default" is, twice: as it is (enforcing) and
// as the dry-run rollout of it (enforcement dryrun, EGR102 warn).
func auditConfigs(t *testing.T, dir string) (enforcing, rollout string, cfg *config.Config) {
	t.Helper()
	cfg, err := config.LoadFile(filepath.Join(scenariosDir(), "000-http-mtls-origination", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Allow {
		if slices.Contains(cfg.Allow[i].Namespaces, "default") {
			cfg.Allow[i].Namespaces = append(cfg.Allow[i].Namespaces, auditNamespace)
		}
	}
	write := func(name string, c *config.Config) string {
		b, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	enforcing = write("enforcing.yaml", cfg)
	dry := *cfg
	dry.Enforcement = config.ActionDryRun
	dry.Overrides = []config.Override{{Rules: []string{"EGR102"}, Action: config.ActionWarn}}
	rollout = write("rollout.yaml", &dry)
	return enforcing, rollout, &dry
}

// auditDocs are scenario 000's compliant, mutate and rejected objects moved
// to the audit namespace, written to one file.
func auditDocs(t *testing.T, dir string) (file string, docs []*harness.Doc) {
	t.Helper()
	src := filepath.Join(scenariosDir(), "000-http-mtls-origination")
	var all []byte
	for _, name := range []string{"compliant.yaml", "mutate.yaml", "rejected.yaml"} {
		read, err := harness.LoadDocs(src, name, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range read {
			moved, err := derive(d, dir, auditNamespace, d.Obj.GetName())
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, moved)
			all = append(all, "---\n"...)
			all = append(all, moved.Raw...)
			all = append(all, '\n')
		}
	}
	file = filepath.Join(dir, "objects.yaml")
	if err := os.WriteFile(file, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, docs
}

// finding is what the tests compare: an object, a rule, and a field (or the
// would-be patch, for mutations).
type finding struct {
	Object, Code, Detail, Result string
}

// TestAuditDryRunRollout rolls egress-guard out in dry run: the scenario's
// objects are all admitted (warnings for the warn rule, Events for the rest),
// then `egress-guard audit --write-reports` reports exactly what an
// enforcing `egress-guard check` of the same files denies or patches; serve
// audits periodically, leader-elected, and updates its reports in place.
func TestAuditDryRunRollout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	enforcing, rollout, rolloutCfg := auditConfigs(t, dir)
	file, docs := auditDocs(t, dir)
	env.ensureNamespace(t, auditNamespace)
	installReportCRDs(t)
	// The platform's credential for test.com's origination, which the
	// files do not hold (no Secret in files is one the check knows nothing
	// of; in the cluster, the audit would find it missing: EGR607).
	env.ensureNamespace(t, "istio-system")
	if r := env.kubectl("create", "secret", "generic", "test.client", "-n", "istio-system",
		"--from-literal=tls.crt=cert", "--from-literal=tls.key=key", "--from-literal=ca.crt=ca"); r.Err != nil {
		t.Fatalf("the origination's Secret:\n%s", r)
	}
	t.Cleanup(func() { env.kubectl("delete", "secret", "test.client", "-n", "istio-system", "--ignore-not-found") })

	g := env.startGuard(t, rollout, "", "--events", "--kubeconfig", env.Kubeconfig)
	env.useGuard(t, g)
	// Deleted while g still answers: the validating webhook judges the
	// deletion of VirtualServices. (Cleanups run last-in first-out.)
	t.Cleanup(func() { env.deleteDocs(t, docs) })

	// Everything is admitted and stored as submitted; the warn rule shows in
	// kubectl's output.
	var warnings []string
	for _, d := range docs {
		r := env.kubectl("apply", "-f", d.Path)
		if r.Err != nil {
			t.Fatalf("dry run: %s was refused:\n%s", d, r)
		}
		warnings = append(warnings, r.Warnings()...)
		obj, found := env.getObject(t, d)
		if !found || !reflect.DeepEqual(harness.Canonical(obj["spec"]), d.Spec()) {
			t.Errorf("dry run: %s is not stored as submitted", d)
		}
	}
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "EGR102") && strings.Contains(w, "port 8443") }) {
		t.Errorf("kubectl printed no warning for the warn rule EGR102: %q", warnings)
	}

	// The dry-run and warn decisions are Events on the objects.
	var reasons map[string]int
	deadline := time.Now().Add(30 * time.Second)
	for {
		reasons = eventReasons(t, auditNamespace)
		if reasons["EgressGuardWouldDeny"] > 0 && reasons["EgressGuardWouldPatch"] > 0 && reasons["EgressGuardWarning"] > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, r := range []string{"EgressGuardWouldDeny", "EgressGuardWouldPatch", "EgressGuardWarning"} {
		if reasons[r] == 0 {
			t.Errorf("no %s Event in %s: %v", r, auditNamespace, reasons)
		}
	}

	// What an enforcing guard would deny or patch, from the files.
	want := enforcingFindings(t, file, enforcing)
	if len(want) == 0 {
		t.Fatal("the enforcing check finds nothing")
	}

	// An earlier audit's reports in a namespace without objects now: stale.
	env.ensureNamespace(t, staleNamespace)
	for gvr, kind := range map[schema.GroupVersionResource]string{reportsGVR: "openreports.io/v1alpha1 Report", policyReportsGVR: "wgpolicyk8s.io/v1alpha2 PolicyReport"} {
		apiVersion, k, _ := strings.Cut(kind, " ")
		obj := &unstructured.Unstructured{}
		obj.SetAPIVersion(apiVersion)
		obj.SetKind(k)
		obj.SetName("egress-guard")
		obj.SetNamespace(staleNamespace)
		obj.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "egress-guard"})
		if _, err := env.Dynamic.Resource(gvr).Namespace(staleNamespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("a stale %s: %v", k, err)
		}
	}

	// An audit of files writes reports but prunes nothing: files are no
	// inventory of the cluster.
	runGuardCommand(t, "audit", "--kubeconfig", env.Kubeconfig, "-f", file, "--config", rollout, "--write-reports")
	if _, err := env.Dynamic.Resource(reportsGVR).Namespace(staleNamespace).Get(ctx, "egress-guard", metav1.GetOptions{}); err != nil {
		t.Errorf("an audit of files deleted the report of %s: %v", staleNamespace, err)
	}

	// The audit of the cluster, written as Reports.
	out := runGuardCommand(t, "audit", "--kubeconfig", env.Kubeconfig, "-n", auditNamespace, "--config", rollout, "--write-reports", "-o", "json")
	var a struct {
		Summary struct{ Objects int }
	}
	if err := json.Unmarshal(out, &a); err != nil || a.Summary.Objects != countPoliced(docs) {
		t.Fatalf("audit -o json: %v, %d objects audited, want %d\n%s", err, a.Summary.Objects, countPoliced(docs), out)
	}
	rep := getReport(t, reportsGVR, auditNamespace)
	got := reportFindings(t, rep)
	compareFindings(t, "OpenReports Report", got, want)

	// serve audits the cluster on its own (interval in the config), on the
	// replica holding the Lease, as wgpolicyk8s PolicyReports; a second audit
	// updates the report instead of adding one.
	periodicCfg := *rolloutCfg
	periodicCfg.Audit = config.Audit{Interval: "5s", ReportAPI: config.ReportAPIPolicyReport}
	b, err := yaml.Marshal(&periodicCfg)
	if err != nil {
		t.Fatal(err)
	}
	periodic := filepath.Join(dir, "periodic.yaml")
	if err := os.WriteFile(periodic, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env.startGuard(t, periodic, "", "--leader-election-namespace", auditNamespace)
	first := waitReport(t, policyReportsGVR, auditNamespace, "", 60*time.Second)
	compareFindings(t, "PolicyReport written by serve", reportFindings(t, first), want)
	second := waitReport(t, policyReportsGVR, auditNamespace, first.GetResourceVersion(), 60*time.Second)
	// The audit of the whole cluster prunes the stale report it writes the
	// kind of; the other API's is left alone.
	if _, err := env.Dynamic.Resource(policyReportsGVR).Namespace(staleNamespace).Get(ctx, "egress-guard", metav1.GetOptions{}); err == nil {
		t.Errorf("serve's audit left the stale PolicyReport of %s", staleNamespace)
	}
	if _, err := env.Dynamic.Resource(reportsGVR).Namespace(staleNamespace).Get(ctx, "egress-guard", metav1.GetOptions{}); err != nil {
		t.Errorf("serve's audit (PolicyReports) deleted the Report of %s: %v", staleNamespace, err)
	}
	if second.GetUID() != first.GetUID() {
		t.Errorf("the second audit replaced the report (uid %s, then %s) instead of updating it", first.GetUID(), second.GetUID())
	}
	list, err := env.Dynamic.Resource(policyReportsGVR).Namespace(auditNamespace).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("PolicyReports in %s: %v, %d, want 1", auditNamespace, err, len(list.Items))
	}
	lease, err := env.Client.CoordinationV1().Leases(auditNamespace).Get(ctx, "egress-guard-audit", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("the audit Lease: %v %+v", err, lease)
	}
}

// installReportCRDs installs the report CRDs the chart ships, as kubectl
// would, and waits until they are served.
func installReportCRDs(t *testing.T) {
	t.Helper()
	dir := filepath.Join(env.Root, "charts", "egress-guard", "files", "crds")
	if r := env.kubectl("apply", "--server-side", "-f", dir); r.Err != nil {
		t.Fatalf("installing the report CRDs:\n%s", r)
	}
	for _, crd := range []string{"reports.openreports.io", "policyreports.wgpolicyk8s.io"} {
		if r := env.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/"+crd); r.Err != nil {
			t.Fatalf("CRD %s:\n%s", crd, r)
		}
	}
}

func runGuardCommand(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(env.guardBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || args[0] != "check" {
			t.Fatalf("egress-guard %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
	}
	return out
}

// enforcingFindings runs `egress-guard check -o json` with the enforcing
// configuration: each denial and each patched object is a finding.
func enforcingFindings(t *testing.T, file, cfg string) []finding {
	t.Helper()
	var rep struct {
		Results []struct {
			Kind, Namespace, Name string
			Skipped               string
			Patch                 []map[string]any
			Violations            []struct{ Code, Field string }
		}
	}
	if err := json.Unmarshal(runGuardCommand(t, "check", "-f", file, "--config", cfg, "-o", "json"), &rep); err != nil {
		t.Fatal(err)
	}
	var out []finding
	for _, r := range rep.Results {
		obj := r.Kind + " " + r.Namespace + "/" + r.Name
		for _, v := range r.Violations {
			out = append(out, finding{Object: obj, Code: v.Code, Detail: v.Field})
		}
		if len(r.Patch) > 0 {
			patch, err := json.Marshal(r.Patch)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, finding{Object: obj, Code: "patch", Detail: string(patch)})
		}
	}
	return out
}

// reportFindings reads the results of a Report or PolicyReport: violations
// by rule and field, and the would-be patch of each object once.
func reportFindings(t *testing.T, rep *unstructured.Unstructured) []finding {
	t.Helper()
	results, _, _ := unstructured.NestedSlice(rep.Object, "results")
	patches := map[string]bool{}
	var out []finding
	for _, x := range results {
		r := x.(map[string]any)
		res, _ := r["resources"].([]any)
		if len(res) != 1 {
			t.Fatalf("result without its one resource: %v", r)
		}
		ref := res[0].(map[string]any)
		obj := fmt.Sprintf("%s %s/%s", ref["kind"], ref["namespace"], ref["name"])
		props, _ := r["properties"].(map[string]any)
		switch {
		case r["result"] == "pass":
		case props["type"] == "mutation":
			if !patches[obj] {
				patches[obj] = true
				var ops []map[string]any
				if err := json.Unmarshal([]byte(props["patch"].(string)), &ops); err != nil {
					t.Fatalf("%s: patch property: %v", obj, err)
				}
				patch, _ := json.Marshal(ops)
				out = append(out, finding{Object: obj, Code: "patch", Detail: string(patch)})
			}
		default:
			field, _ := props["field"].(string)
			out = append(out, finding{Object: obj, Code: fmt.Sprint(r["policy"]), Detail: field, Result: fmt.Sprint(r["result"])})
		}
	}
	return out
}

// compareFindings checks got holds exactly want, and that the warn rule is
// reported as a warning and the rest as failures.
func compareFindings(t *testing.T, what string, got, want []finding) {
	t.Helper()
	key := func(f finding) string { return f.Object + " " + f.Code + " " + f.Detail }
	var g, w []string
	for _, f := range got {
		g = append(g, key(f))
		if f.Code != "patch" && (f.Code == "EGR102") != (f.Result == "warn") {
			t.Errorf("%s: %s is %s", what, key(f), f.Result)
		}
	}
	for _, f := range want {
		w = append(w, key(f))
	}
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s findings:\n  %s\nthe enforcing check:\n  %s", what, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
	t.Logf("%s: %d findings, as the enforcing check", what, len(g))
}

func getReport(t *testing.T, gvr schema.GroupVersionResource, ns string) *unstructured.Unstructured {
	t.Helper()
	rep, err := env.Dynamic.Resource(gvr).Namespace(ns).Get(context.Background(), "egress-guard", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s egress-guard in %s: %v", gvr.Resource, ns, err)
	}
	return rep
}

// waitReport waits for the report to exist with a resourceVersion other
// than after ("" for any).
func waitReport(t *testing.T, gvr schema.GroupVersionResource, ns, after string, timeout time.Duration) *unstructured.Unstructured {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rep, err := env.Dynamic.Resource(gvr).Namespace(ns).Get(context.Background(), "egress-guard", metav1.GetOptions{})
		if err == nil && rep.GetResourceVersion() != after {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new %s egress-guard in %s after %s: %v", gvr.Resource, ns, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

func eventReasons(t *testing.T, ns string) map[string]int {
	t.Helper()
	list, err := env.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Source.Component == "egress-guard" {
			out[e.Reason]++
		}
	}
	return out
}

// countPoliced counts the documents of kinds the guard polices.
func countPoliced(docs []*harness.Doc) int {
	n := 0
	cfg := config.Default()
	for _, d := range docs {
		gvk := d.Obj.GroupVersionKind()
		if _, ok := cfg.Policed(gvk.Group, gvk.Kind); ok {
			n++
		}
	}
	return n
}
