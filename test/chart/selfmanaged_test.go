//go:build e2e

package chart

import (
	"bytes"
	"context"
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egress-guard/egress-guard/test/harness"
)

const (
	selfManagedRelease   = "eg-sm"
	selfManagedNamespace = "egress-guard-sm"
	// auditInterval is short, so that an audit follows the scenario soon.
	auditInterval = "5s"
)

var reportsGVR = schema.GroupVersionResource{Group: "openreports.io", Version: "v1alpha1", Resource: "reports"}

// TestSelfManagedInstall installs the chart as docs/install.md says, in
// self-managed mode (no cert-manager), with Events (the default) and the
// periodic audit on and the report CRDs the chart ships. egress-guard runs
// with the Deployment's own arguments and mounted files, as the chart's
// ServiceAccount (a TokenRequest token): it creates the Secret, writes the
// CA into both webhook configurations, and the API server calls it through
// the chart's Service over verified TLS. Its Events and its Reports show
// that the chart's RBAC for both is enough; any call the RBAC refuses fails
// the test. helm uninstall removes the webhooks and keeps the report CRD.
func TestSelfManagedInstall(t *testing.T) {
	ctx := context.Background()
	s, err := harness.LoadScenario(filepath.Join(mustRoot(t), "test", "scenarios", scenario), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env.ensureNamespace(t, selfManagedNamespace, nil)
	for _, ns := range s.Namespaces() {
		env.ensureNamespace(t, ns, nil)
	}
	// Event timestamps have whole seconds.
	start := time.Now().Add(-time.Second)

	inst := install(t, s, selfManagedRelease, selfManagedNamespace,
		[]string{"Certificates: self-managed", "Events: on", "Audit: every " + auditInterval, "kubectl get reports -A", "Report CRDs installed: " + openReportsCRD},
		"--set", "certificates.mode=self-managed", "--set", "config.audit.interval="+auditInterval)
	if r := env.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/"+openReportsCRD); r.Err != nil {
		t.Fatalf("the chart's report CRD:\n%s", r)
	}
	c := inst.deployment.Spec.Template.Spec.Containers[0]
	secretRef, _ := flag(c.Args, "cert-secret")
	secretNS, secretName, _ := strings.Cut(secretRef, "/")
	if secretNS != inst.namespace {
		t.Fatalf("--cert-secret=%s is not in the release namespace", secretRef)
	}
	if _, err := env.Client.CoreV1().Secrets(secretNS).Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Secret %s exists before egress-guard runs (%v)", secretRef, err)
	}
	for _, w := range inst.webhookConfigurations(t) {
		if len(w.caBundle) > 0 {
			t.Fatalf("%s has a caBundle before egress-guard runs", w.name)
		}
	}

	// Ready means a serving certificate is loaded, issued after the
	// caBundle is written.
	g := inst.startGuard(t, nil)
	inst.route(t, g)

	t.Run("certificates", func(t *testing.T) {
		secret, err := env.Client.CoreV1().Secrets(secretNS).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("egress-guard did not create Secret %s: %v", secretRef, err)
		}
		caPEM := secret.Data["ca.crt"]
		for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt", "ca.key"} {
			if len(secret.Data[key]) == 0 {
				t.Errorf("Secret %s has no %s", secretRef, key)
			}
		}
		for _, w := range inst.webhookConfigurations(t) {
			if !bytes.Equal(w.caBundle, caPEM) {
				t.Errorf("%s: caBundle (%d bytes) is not the Secret's ca.crt (%d bytes)", w.name, len(w.caBundle), len(caPEM))
			}
		}
		leaf, err := harness.ParseCertificatePEM(secret.Data[corev1.TLSCertKey])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: inst.serverName, Roots: pool}); err != nil {
			t.Errorf("the serving certificate does not verify for %s against the caBundle: %v", inst.serverName, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	waitWebhooksReached(t, g)

	deleteScenarioAtEnd(t, s)
	t.Run("scenario", func(t *testing.T) { applyScenario(t, s) })
	t.Run("leases", func(t *testing.T) {
		inst.waitLeases(t, "leader-election-id", "audit-leader-election-id")
	})
	policed := policedObjects(s)
	t.Run("events", func(t *testing.T) {
		// The platform policy's PLT001 is a warn violation of every policed
		// object: an EgressGuardWarning Event on each.
		var missing []string
		if !eventually(func() bool {
			missing = nil
			for _, d := range policed {
				if len(warningEvents(t, d, start)) == 0 {
					missing = append(missing, d.String())
				}
			}
			return len(missing) == 0
		}) {
			t.Errorf("no EgressGuardWarning Event with PLT001 since %s on %v", start.Format(time.RFC3339), missing)
		}
	})
	t.Run("audit", func(t *testing.T) {
		// Every policed object in its namespace's Report; the first audits
		// may have run before the scenario was applied.
		byNS := map[string][]*harness.Doc{}
		for _, d := range policed {
			byNS[d.Obj.GetNamespace()] = append(byNS[d.Obj.GetNamespace()], d)
		}
		for ns, docs := range byNS {
			var missing []string
			var rep *unstructured.Unstructured
			if !eventually(func() bool {
				rep, missing = reportMissing(ns, docs)
				return rep != nil && len(missing) == 0
			}) {
				t.Errorf("Report %s/egress-guard (exists: %v) lacks %v within %s", ns, rep != nil, missing, waitTimeout)
				continue
			}
			if src, _, _ := unstructured.NestedString(rep.Object, "source"); src != "egress-guard" || rep.GetLabels()["app.kubernetes.io/managed-by"] != "egress-guard" {
				t.Errorf("Report %s/%s: source %q, labels %v", ns, rep.GetName(), src, rep.GetLabels())
			}
		}
	})

	if err := g.Stop(); err != nil {
		t.Error(err)
	}
	env.proxy.Unroute(inst.serviceAddr)

	t.Run("uninstall", func(t *testing.T) {
		r := env.helmRun("uninstall", inst.release, "--namespace", inst.namespace, "--wait")
		if r.Err != nil {
			t.Fatalf("helm uninstall failed:\n%s", r)
		}
		if !strings.Contains(r.Output(), "kept due to the resource policy") || !strings.Contains(r.Output(), openReportsCRD) {
			t.Errorf("helm uninstall does not say it kept %s:\n%s", openReportsCRD, r)
		}
		api := env.Client.AdmissionregistrationV1()
		_, errM := api.MutatingWebhookConfigurations().Get(ctx, inst.webhookConfigName, metav1.GetOptions{})
		_, errV := api.ValidatingWebhookConfigurations().Get(ctx, inst.webhookConfigName, metav1.GetOptions{})
		if !apierrors.IsNotFound(errM) || !apierrors.IsNotFound(errV) {
			t.Errorf("after helm uninstall the webhook configurations remain (%v, %v)", errM, errV)
		}
		if r := env.kubectl("get", "crd", openReportsCRD); r.Err != nil {
			t.Errorf("helm uninstall deleted the report CRD, and every report with it:\n%s", r)
		}
		if list, err := env.Dynamic.Resource(reportsGVR).Namespace("").List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) == 0 {
			t.Errorf("the Reports did not survive helm uninstall (%v)", err)
		}
	})
}

// policedObjects are the scenario's stored objects the webhooks see and
// the audit reports: mutated and compliant ones outside the exempt
// namespaces.
func policedObjects(s *harness.Scenario) []*harness.Doc {
	var out []*harness.Doc
	for _, d := range append(slices.Clone(s.Mutate), s.Compliant...) {
		if !slices.Contains(s.Exempt, d.Obj.GetNamespace()) {
			out = append(out, d)
		}
	}
	return out
}

// warningEvents are the EgressGuardWarning Events with PLT001 on the
// document's object, last seen at or after since.
func warningEvents(t *testing.T, d *harness.Doc, since time.Time) []corev1.Event {
	t.Helper()
	list, err := env.Client.CoreV1().Events(d.Obj.GetNamespace()).List(context.Background(), metav1.ListOptions{
		FieldSelector: "reason=EgressGuardWarning,involvedObject.name=" + d.Obj.GetName() + ",involvedObject.kind=" + d.Obj.GetKind(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if strings.Contains(e.Message, "PLT001") && !e.LastTimestamp.Time.Before(since) && e.Source.Component == "egress-guard" {
			out = append(out, e)
		}
	}
	return out
}

// reportMissing reads the egress-guard Report of ns (nil when there is
// none) and returns the documents none of its results names.
func reportMissing(ns string, docs []*harness.Doc) (*unstructured.Unstructured, []string) {
	rep, err := env.Dynamic.Resource(reportsGVR).Namespace(ns).Get(context.Background(), "egress-guard", metav1.GetOptions{})
	if err != nil {
		return nil, nil
	}
	named := map[string]bool{}
	results, _, _ := unstructured.NestedSlice(rep.Object, "results")
	for _, r := range results {
		subjects, _, _ := unstructured.NestedSlice(r.(map[string]any), "resources")
		for _, s := range subjects {
			m := s.(map[string]any)
			named[m["kind"].(string)+"/"+m["name"].(string)] = true
		}
	}
	var missing []string
	for _, d := range docs {
		if key := d.Obj.GetKind() + "/" + d.Obj.GetName(); !named[key] {
			missing = append(missing, key)
		}
	}
	return rep, missing
}
