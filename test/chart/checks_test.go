//go:build e2e

package chart

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/test/harness"
	"github.com/egress-guard/egress-guard/webhook/config"
)

// rendered is the output of helm template for one case.
type rendered struct {
	objs      harness.Objects
	namespace string
	want      want
}

// one decodes the only object of kind into out, or fails t.
func (r rendered) one(t *testing.T, kind string, out any) *unstructured.Unstructured {
	t.Helper()
	objs := r.objs.Kind(kind)
	if len(objs) != 1 {
		t.Fatalf("want one %s, the chart rendered %d: %v", kind, len(objs), r.objs.Refs())
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, out); err != nil {
		t.Fatalf("decoding %s %s: %v", kind, objs[0].GetName(), err)
	}
	return objs[0]
}

func (r rendered) deployment(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	var d appsv1.Deployment
	r.one(t, "Deployment", &d)
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment %s has %d containers, want 1", d.Name, n)
	}
	return &d, &d.Spec.Template.Spec.Containers[0]
}

// flag returns the value of --name=value among args.
func flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func (r rendered) service(t *testing.T) *corev1.Service {
	t.Helper()
	var svcs []*corev1.Service
	for _, obj := range r.objs.Kind("Service") {
		var s corev1.Service
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &s); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(s.Name, "-metrics") {
			svcs = append(svcs, &s)
		}
	}
	if len(svcs) != 1 {
		t.Fatalf("want one webhook Service, got %d: %v", len(svcs), r.objs.Refs())
	}
	return svcs[0]
}

// webhook is what the mutating and validating webhooks share.
type webhook struct {
	config, name        string
	clientConfig        admissionregistrationv1.WebhookClientConfig
	rules               []admissionregistrationv1.RuleWithOperations
	failurePolicy       *admissionregistrationv1.FailurePolicyType
	matchPolicy         *admissionregistrationv1.MatchPolicyType
	namespaceSelector   *metav1.LabelSelector
	sideEffects         *admissionregistrationv1.SideEffectClass
	timeout             *int32
	reviewVersions      []string
	annotations         map[string]string
	reinvocationPolicy  *admissionregistrationv1.ReinvocationPolicyType
	objectSelectorIsNil bool
}

// webhooks returns the first webhook of the mutating and of the validating
// configuration: the ones for config.kinds. The mutating configuration has
// no other; the validating one has the workload webhooks after it
// (workloadWebhooks).
func (r rendered) webhooks(t *testing.T) []webhook {
	t.Helper()
	m, v := r.webhookConfigurations(t)
	if len(m.Webhooks) != 1 || len(v.Webhooks) == 0 {
		t.Fatalf("want one mutating webhook and at least one validating webhook, got %d mutating and %d validating", len(m.Webhooks), len(v.Webhooks))
	}
	return []webhook{mutatingWebhook(m, m.Webhooks[0]), validatingWebhook(v, v.Webhooks[0])}
}

// workloadWebhooks returns the webhooks of the validating configuration
// after its first: the workload webhooks.
func (r rendered) workloadWebhooks(t *testing.T) []webhook {
	t.Helper()
	_, v := r.webhookConfigurations(t)
	var out []webhook
	for _, w := range v.Webhooks[1:] {
		out = append(out, validatingWebhook(v, w))
	}
	return out
}

func (r rendered) webhookConfigurations(t *testing.T) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	r.one(t, "MutatingWebhookConfiguration", &m)
	r.one(t, "ValidatingWebhookConfiguration", &v)
	return &m, &v
}

func mutatingWebhook(m *admissionregistrationv1.MutatingWebhookConfiguration, mw admissionregistrationv1.MutatingWebhook) webhook {
	return webhook{config: "MutatingWebhookConfiguration " + m.Name, name: mw.Name, clientConfig: mw.ClientConfig, rules: mw.Rules,
		failurePolicy: mw.FailurePolicy, matchPolicy: mw.MatchPolicy, namespaceSelector: mw.NamespaceSelector,
		sideEffects: mw.SideEffects, timeout: mw.TimeoutSeconds, reviewVersions: mw.AdmissionReviewVersions,
		annotations: m.Annotations, reinvocationPolicy: mw.ReinvocationPolicy, objectSelectorIsNil: mw.ObjectSelector == nil}
}

func validatingWebhook(v *admissionregistrationv1.ValidatingWebhookConfiguration, vw admissionregistrationv1.ValidatingWebhook) webhook {
	return webhook{config: "ValidatingWebhookConfiguration " + v.Name, name: vw.Name, clientConfig: vw.ClientConfig, rules: vw.Rules,
		failurePolicy: vw.FailurePolicy, matchPolicy: vw.MatchPolicy, namespaceSelector: vw.NamespaceSelector,
		sideEffects: vw.SideEffects, timeout: vw.TimeoutSeconds, reviewVersions: vw.AdmissionReviewVersions,
		annotations: v.Annotations, objectSelectorIsNil: vw.ObjectSelector == nil}
}

func str[T ~string](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return string(*p)
}

// checkWebhooks: rules for the policed kinds (config.kinds) in every
// version, Equivalent matching, the failure policy, side effects and timeout
// asked for, the chart's Service as client, and a namespaceSelector that,
// evaluated like the API server does, never sends kube-system, the release
// namespace, an excluded or an opted-out namespace. Then the workload
// webhooks (checkWorkloadWebhooks).
func (r rendered) checkWebhooks(t *testing.T) {
	svc := r.service(t)
	// CREATE and UPDATE: one rule per API group of the kinds.
	var writes []string
	for _, g := range r.want.groups {
		writes = append(writes, ruleString(admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{g.group}, APIVersions: []string{"*"}, Resources: g.resources,
				Scope: ptr.To(admissionregistrationv1.NamespacedScope),
			},
		}))
	}
	// The validating webhook judges a VirtualService's deletion too, and no
	// other, when VirtualServices are policed.
	validating := slices.Clone(writes)
	if slices.ContainsFunc(r.want.kinds, func(k policedKind) bool {
		return k.Group == "networking.istio.io" && k.Kind == "VirtualService"
	}) {
		validating = append(validating, ruleString(admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete},
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{"networking.istio.io"}, APIVersions: []string{"*"}, Resources: []string{"virtualservices"},
				Scope: ptr.To(admissionregistrationv1.NamespacedScope),
			},
		}))
	}
	for i, w := range r.webhooks(t) {
		what := w.config + " webhook " + w.name
		want := map[int][]string{0: writes, 1: validating}[i]
		path := map[int]string{0: "/mutate", 1: "/validate"}[i]
		r.checkWebhook(t, what, w, svc, want, path, r.want.failurePolicy)
		if i == 0 && str(w.reinvocationPolicy) != "IfNeeded" {
			t.Errorf("%s: reinvocationPolicy %s, want IfNeeded", what, str(w.reinvocationPolicy))
		}
		r.checkNamespaceSelector(t, what, w.namespaceSelector)
	}
	r.checkWorkloadWebhooks(t, svc)
}

// checkWebhook: the rules, Equivalent matching, the failure policy, side
// effects and timeout, v1 reviews, no objectSelector, and the chart's
// Service at path as client.
func (r rendered) checkWebhook(t *testing.T, what string, w webhook, svc *corev1.Service, rules []string, path, failurePolicy string) {
	t.Helper()
	var got []string
	for _, rule := range w.rules {
		got = append(got, ruleString(rule))
	}
	if !slices.Equal(got, rules) {
		t.Errorf("%s: rules\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(rules, "\n  "))
	}
	if str(w.matchPolicy) != "Equivalent" {
		t.Errorf("%s: matchPolicy %s, want Equivalent", what, str(w.matchPolicy))
	}
	if str(w.failurePolicy) != failurePolicy {
		t.Errorf("%s: failurePolicy %s, want %s", what, str(w.failurePolicy), failurePolicy)
	}
	if str(w.sideEffects) != r.want.sideEffects {
		t.Errorf("%s: sideEffects %s, want %s", what, str(w.sideEffects), r.want.sideEffects)
	}
	if w.timeout == nil || *w.timeout != r.want.timeout {
		t.Errorf("%s: timeoutSeconds %v, want %d", what, w.timeout, r.want.timeout)
	}
	if !slices.Equal(w.reviewVersions, []string{"v1"}) {
		t.Errorf("%s: admissionReviewVersions %v, want [v1]", what, w.reviewVersions)
	}
	if !w.objectSelectorIsNil {
		t.Errorf("%s: has an objectSelector: an object could label itself out of the checks", what)
	}
	s := w.clientConfig.Service
	switch {
	case w.clientConfig.URL != nil:
		t.Errorf("%s: url clientConfig %s, want the chart's Service", what, *w.clientConfig.URL)
	case s == nil:
		t.Errorf("%s: no service clientConfig", what)
	case s.Name != svc.Name || s.Namespace != r.namespace || str(s.Path) != path || s.Port == nil || *s.Port != svc.Spec.Ports[0].Port:
		t.Errorf("%s: calls service %s/%s port %v path %s, want %s/%s port %d path %s", what, s.Namespace, s.Name, s.Port, str(s.Path), r.namespace, svc.Name, svc.Spec.Ports[0].Port, path)
	}
}

// workloadWebhookNames are the workload webhooks, in order: one per way a
// namespace joins the mesh, as Istio's sidecar injector has them.
var workloadWebhookNames = []string{"workloads.egressguard.io", "workloads-rev.egressguard.io", "workloads-ambient.egressguard.io"}

// meshWebhook is the workload webhook a namespace with these labels must be
// sent to, "" for none: the one of Istio's sidecar injector
// (istio-injection=enabled; else an istio.io/rev revision without
// istio-injection), else ambient mode (istio.io/dataplane-mode=ambient
// without either label).
func meshWebhook(l labels.Set) string {
	injection, hasInjection := l["istio-injection"]
	switch {
	case injection == "enabled":
		return workloadWebhookNames[0]
	case hasInjection:
		return ""
	case l.Has("istio.io/rev"):
		return workloadWebhookNames[1]
	case l["istio.io/dataplane-mode"] == "ambient":
		return workloadWebhookNames[2]
	}
	return ""
}

// checkWorkloadWebhooks: with config.workloads, the validating
// configuration's first webhook is followed by the three workload webhooks
// (and the mutating configuration has none): CREATE and UPDATE of Pods and
// of the workload kinds of config.WorkloadKinds, through the chart's
// Service at /validate, with webhook.workloadsFailurePolicy, and
// namespaceSelectors that send a mesh namespace to exactly one of them and
// any other namespace to none.
func (r rendered) checkWorkloadWebhooks(t *testing.T, svc *corev1.Service) {
	ws := r.workloadWebhooks(t)
	var names []string
	for _, w := range ws {
		names = append(names, w.name)
	}
	wantNames := workloadWebhookNames
	if !r.want.workloads {
		wantNames = nil
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("validating webhooks after the first: %v, want %v", names, wantNames)
	}
	if len(ws) == 0 {
		return
	}
	// One rule per API group of the workload kinds, in the version served.
	var rules []string
	var groups []string
	byGroup := map[string][]string{}
	versions := map[string]string{}
	for _, k := range config.WorkloadKinds {
		if _, ok := byGroup[k.Group]; !ok {
			groups = append(groups, k.Group)
		}
		byGroup[k.Group] = append(byGroup[k.Group], k.Resource)
		versions[k.Group] = k.Version
	}
	for _, g := range groups {
		rules = append(rules, ruleString(admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{g}, APIVersions: []string{versions[g]}, Resources: byGroup[g],
				Scope: ptr.To(admissionregistrationv1.NamespacedScope),
			},
		}))
	}
	if want := []string{
		`operations [CREATE UPDATE] apiGroups [""] apiVersions ["v1"] resources ["pods"] scope Namespaced`,
		`operations [CREATE UPDATE] apiGroups ["apps"] apiVersions ["v1"] resources ["deployments" "statefulsets" "daemonsets" "replicasets"] scope Namespaced`,
		`operations [CREATE UPDATE] apiGroups ["batch"] apiVersions ["v1"] resources ["jobs" "cronjobs"] scope Namespaced`,
	}; !slices.Equal(rules, want) {
		t.Errorf("config.WorkloadKinds gives the rules\n  %s\nthe chart's are\n  %s", strings.Join(rules, "\n  "), strings.Join(want, "\n  "))
	}
	sels := make([]labels.Selector, len(ws))
	for i, w := range ws {
		what := w.config + " webhook " + w.name
		r.checkWebhook(t, what, w, svc, rules, "/validate", r.want.workloadsFailurePolicy)
		if w.namespaceSelector == nil {
			t.Fatalf("%s: no namespaceSelector: every Pod of the cluster goes to the webhook", what)
		}
		var err error
		if sels[i], err = metav1.LabelSelectorAsSelector(w.namespaceSelector); err != nil {
			t.Fatalf("%s: namespaceSelector: %v", what, err)
		}
	}
	sent := func(l labels.Set) []string {
		var out []string
		for i, sel := range sels {
			if sel.Matches(l) {
				out = append(out, ws[i].name)
			}
		}
		return out
	}
	ns := func(name string, required, extra map[string]string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		maps.Copy(l, required)
		maps.Copy(l, extra)
		return l
	}
	for _, mesh := range []map[string]string{
		{},
		{"istio-injection": "enabled"},
		{"istio.io/rev": "1-22"},
		{"istio.io/rev": "default"},
		{"istio.io/dataplane-mode": "ambient"},
		{"istio-injection": "disabled"},
		{"istio-injection": ""},
		{"istio-injection": "disabled", "istio.io/rev": "1-22"},
		{"istio-injection": "disabled", "istio.io/dataplane-mode": "ambient"},
		{"istio-injection": "enabled", "istio.io/rev": "1-22"},
		{"istio-injection": "enabled", "istio.io/dataplane-mode": "ambient"},
		{"istio.io/rev": "1-22", "istio.io/dataplane-mode": "ambient"},
		{"istio-injection": "enabled", "istio.io/rev": "1-22", "istio.io/dataplane-mode": "ambient"},
		{"istio.io/dataplane-mode": "none"},
		{"istio.io/dataplane-mode": ""},
	} {
		// An ordinary namespace: to the one webhook of its mesh label, if
		// any. The labels the values require are there.
		l := ns("team-a", r.want.required, mesh)
		var want []string
		if name := meshWebhook(l); name != "" {
			want = []string{name}
		}
		if got := sent(l); !slices.Equal(got, want) {
			t.Errorf("a namespace labelled %v is sent to the workload webhooks %v, want %v", l, got, want)
		}
		if config.MeshNamespace(l) != (len(want) == 1) {
			t.Errorf("a namespace labelled %v: config.MeshNamespace says %v, the chart's webhooks %v", l, config.MeshNamespace(l), want)
		}
		// Without the labels the values require: none.
		if len(r.want.required) > 0 && !labels.SelectorFromSet(r.want.required).Matches(labels.Set(mesh)) {
			if l := ns("team-a", nil, mesh); len(sent(l)) > 0 {
				t.Errorf("a namespace labelled %v, without the required labels %v, is sent to the workload webhooks %v", l, r.want.required, sent(l))
			}
		}
		// Never: whatever the mesh labels say.
		never := map[string]labels.Set{
			"kube-system":                    ns("kube-system", r.want.required, mesh),
			"the release namespace":          ns(r.namespace, r.want.required, mesh),
			"an opted-out namespace":         ns("team-a", r.want.required, labels.Merge(mesh, labels.Set{r.want.optOutLabel: "true"})),
			"an opted-out namespace (empty)": ns("team-a", r.want.required, labels.Merge(mesh, labels.Set{r.want.optOutLabel: ""})),
		}
		for _, name := range r.want.excluded {
			never["excluded namespace "+name] = ns(name, r.want.required, mesh)
		}
		for desc, l := range never {
			if got := sent(l); len(got) > 0 {
				t.Errorf("%s (labels %v) is sent to the workload webhooks %v", desc, l, got)
			}
		}
	}
}

// ruleString is a webhook rule as one comparable line.
func ruleString(r admissionregistrationv1.RuleWithOperations) string {
	return fmt.Sprintf("operations %v apiGroups %q apiVersions %q resources %q scope %s", r.Operations, r.APIGroups, r.APIVersions, r.Resources, str(r.Scope))
}

// checkNamespaceSelector evaluates the selector against namespaces as the
// API server labels them (kubernetes.io/metadata.name).
func (r rendered) checkNamespaceSelector(t *testing.T, what string, ls *metav1.LabelSelector) {
	t.Helper()
	if ls == nil {
		t.Errorf("%s: no namespaceSelector: every namespace, kube-system included, goes to the webhook", what)
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("%s: namespaceSelector: %v", what, err)
	}
	ns := func(name string, extra map[string]string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		maps.Copy(l, r.want.required)
		maps.Copy(l, extra)
		return l
	}
	never := map[string]labels.Set{
		"kube-system":                    ns("kube-system", nil),
		"the release namespace":          ns(r.namespace, nil),
		"an opted-out namespace":         ns("team-a", map[string]string{r.want.optOutLabel: "true"}),
		"an opted-out namespace (empty)": ns("team-a", map[string]string{r.want.optOutLabel: ""}),
	}
	for _, name := range r.want.excluded {
		never["excluded namespace "+name] = ns(name, nil)
	}
	for desc, l := range never {
		if sel.Matches(l) {
			t.Errorf("%s: namespaceSelector %s sends %s (labels %v) to the webhook", what, sel, desc, l)
		}
	}
	if team := ns("team-a", nil); !sel.Matches(team) {
		t.Errorf("%s: namespaceSelector %s does not send an ordinary namespace (labels %v) to the webhook", what, sel, team)
	}
	if len(r.want.required) > 0 {
		if l := (labels.Set{"kubernetes.io/metadata.name": "team-a"}); sel.Matches(l) {
			t.Errorf("%s: namespaceSelector %s sends a namespace without the required labels %v", what, sel, r.want.required)
		}
	}
}

// checkCertificates: in cert-manager mode, a serving Certificate for the
// Service's DNS names whose Secret the pods mount, named by both webhook
// configurations' inject-ca-from; the chart's CA chain unless an issuer is
// given. In self-managed mode, no cert-manager object and no annotation.
func (r rendered) checkCertificates(t *testing.T) {
	svc := r.service(t)
	d, c := r.deployment(t)
	certs := r.objs.Kind("Certificate")
	issuers := r.objs.Kind("Issuer")
	if r.want.mode == "self-managed" {
		if len(certs)+len(issuers) > 0 {
			t.Errorf("self-managed mode renders cert-manager objects: %v", append(certs, issuers...).Refs())
		}
		for _, w := range r.webhooks(t) {
			if v, ok := w.annotations[harness.InjectCAFromAnnotation]; ok {
				t.Errorf("%s: self-managed mode, yet %s=%s", w.config, harness.InjectCAFromAnnotation, v)
			}
		}
		return
	}

	var serving *unstructured.Unstructured
	for _, w := range r.webhooks(t) {
		ref := w.annotations[harness.InjectCAFromAnnotation]
		ns, name, _ := strings.Cut(ref, "/")
		if ns != r.namespace || r.objs.Get("Certificate", name) == nil {
			t.Fatalf("%s: %s=%q does not name a Certificate of the chart in %s: %v", w.config, harness.InjectCAFromAnnotation, ref, r.namespace, certs.Refs())
		}
		serving = r.objs.Get("Certificate", name)
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	if want := svc.Name + "." + r.namespace + ".svc"; !slices.Contains(dnsNames, want) {
		t.Errorf("Certificate %s: dnsNames %v lack %s, the name the API server verifies", serving.GetName(), dnsNames, want)
	}
	secretName, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName")
	certDir, _ := flag(c.Args, "cert-dir")
	if mounted := volumeAt(d, c, certDir); mounted == nil || mounted.Secret == nil || mounted.Secret.SecretName != secretName {
		t.Errorf("Deployment: --cert-dir=%s is not the Secret %s of Certificate %s (volume %+v)", certDir, secretName, serving.GetName(), mounted)
	}
	issuer, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name")
	kind, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "kind")
	if r.want.issuer != "" {
		if issuer != r.want.issuer || kind != r.want.issuerKind || len(issuers) > 0 || len(certs) != 1 {
			t.Errorf("with an issuerRef, want only Certificate %s issued by %s %s; got issuer %s %s and %v", serving.GetName(), r.want.issuerKind, r.want.issuer, kind, issuer, append(certs, issuers...).Refs())
		}
		return
	}
	// The chart's chain: self-signed Issuer -> CA Certificate -> CA Issuer ->
	// serving Certificate.
	caIssuer := r.objs.Get("Issuer", issuer)
	if caIssuer == nil || kind != "Issuer" {
		t.Fatalf("Certificate %s: issuer %s %s is not an Issuer of the chart: %v", serving.GetName(), kind, issuer, issuers.Refs())
	}
	caSecret, _, _ := unstructured.NestedString(caIssuer.Object, "spec", "ca", "secretName")
	var ca *unstructured.Unstructured
	for _, crt := range certs {
		if s, _, _ := unstructured.NestedString(crt.Object, "spec", "secretName"); s == caSecret {
			ca = crt
		}
	}
	if ca == nil {
		t.Fatalf("Issuer %s signs with Secret %q, which no Certificate of the chart fills", issuer, caSecret)
	}
	if isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA"); !isCA {
		t.Errorf("Certificate %s (the CA) lacks isCA: true", ca.GetName())
	}
	root, _, _ := unstructured.NestedString(ca.Object, "spec", "issuerRef", "name")
	if self := r.objs.Get("Issuer", root); self == nil || self.Object["spec"].(map[string]any)["selfSigned"] == nil {
		t.Errorf("Certificate %s (the CA) is not issued by a self-signed Issuer of the chart (issuer %s)", ca.GetName(), root)
	}
}

// volumeAt returns the volume mounted at dir in c, or nil.
func volumeAt(d *appsv1.Deployment, c *corev1.Container, dir string) *corev1.Volume {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for i, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name {
				return &d.Spec.Template.Spec.Volumes[i]
			}
		}
	}
	return nil
}

// checkRBAC: the pods get API access, a ServiceAccount token and RBAC only
// for what they do, each feature its own role bound to the chart's
// ServiceAccount:
//
//	self-managed certificates  Role <fullname> (the Secret, the Lease, Events)
//	                           ClusterRole <fullname> (the two webhook
//	                           configurations, by name)
//	events                     ClusterRole <fullname>-events (core Events)
//	inventory, or the audit    ClusterRole <fullname>-inventory (get, list
//	                           and watch the cluster model's kinds), Role
//	                           <fullname>-inventory in the gateway's
//	                           namespace (AuthorizationPolicies, Secrets)
//	audit                      ClusterRole <fullname>-audit (list the Istio
//	                           objects, and with config.workloads the
//	                           namespaces and the workloads; write the
//	                           reports of one API)
//	any of them                Role <fullname>-audit (the audit's Lease and
//	                           its leader election's Events): serve runs the
//	                           audit's election whenever it reaches the API
//
// With none of them (cert-manager mode, events and inventory off, no audit):
// no RBAC and no token.
func (r rendered) checkRBAC(t *testing.T) {
	d, c := r.deployment(t)
	var sa corev1.ServiceAccount
	r.one(t, "ServiceAccount", &sa)
	if d.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("Deployment runs as ServiceAccount %q, the chart's is %q", d.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}
	selfManaged := r.want.mode == "self-managed"
	api := selfManaged || r.want.events || r.want.inventory || r.want.audit != ""
	if mount := d.Spec.Template.Spec.AutomountServiceAccountToken; mount == nil || *mount != api {
		t.Errorf("automountServiceAccountToken %v, want %v (self-managed %v, events %v, inventory %v, audit %q)", mount, api, selfManaged, r.want.events, r.want.inventory, r.want.audit)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s: automountServiceAccountToken %v, want false (the pods choose)", sa.Name, sa.AutomountServiceAccountToken)
	}

	// The flags that name what the rules grant.
	if events := slices.Contains(c.Args, "--events"); events != r.want.events {
		t.Errorf("--events passed: %v, want %v: %v", events, r.want.events, c.Args)
	}
	if inventory := slices.Contains(c.Args, "--inventory"); inventory != r.want.inventory {
		t.Errorf("--inventory passed: %v, want %v: %v", inventory, r.want.inventory, c.Args)
	}
	leNamespace, hasLENamespace := flag(c.Args, "leader-election-namespace")
	auditLease, hasAuditLease := flag(c.Args, "audit-leader-election-id")
	if api && (leNamespace != r.namespace || auditLease != r.want.auditLease) {
		t.Errorf("--leader-election-namespace=%q --audit-leader-election-id=%q, want %s and %s (where the Role grants the Lease)", leNamespace, auditLease, r.namespace, r.want.auditLease)
	}
	if !api && (hasLENamespace || hasAuditLease) {
		t.Errorf("no API access, yet Lease flags: %v", c.Args)
	}

	wantRoles := map[string][]rbacv1.PolicyRule{}
	wantClusterRoles := map[string][]rbacv1.PolicyRule{}
	if selfManaged {
		wantRoles[sa.Name], wantClusterRoles[sa.Name] = r.selfManagedRules(t, c)
	}
	if api {
		wantRoles[sa.Name+"-audit"] = []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{auditLease}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		}
	}
	if r.want.events {
		wantClusterRoles[sa.Name+"-events"] = []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		}
	}
	// The cluster model, read by serve --inventory and listed by the audit:
	// Istio's routing and NetworkPolicies everywhere, AuthorizationPolicies
	// and Secrets in the gateway's namespace alone.
	roleNamespaces := map[string]string{}
	if r.want.inventory || r.want.audit != "" {
		wantClusterRoles[sa.Name+"-inventory"] = []rbacv1.PolicyRule{
			{APIGroups: []string{"networking.istio.io"}, Resources: []string{"serviceentries", "virtualservices", "destinationrules", "gateways", "sidecars"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch"}},
		}
		wantRoles[sa.Name+"-inventory"] = []rbacv1.PolicyRule{
			{APIGroups: []string{"security.istio.io"}, Resources: []string{"authorizationpolicies"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
		}
		roleNamespaces[sa.Name+"-inventory"] = "istio-system"
	}
	if r.want.audit != "" {
		reports := rbacv1.PolicyRule{APIGroups: []string{"openreports.io"}, Resources: []string{"reports"}}
		if r.want.audit == "wgpolicyk8s" {
			reports = rbacv1.PolicyRule{APIGroups: []string{"wgpolicyk8s.io"}, Resources: []string{"policyreports"}}
		}
		reports.Verbs = []string{"get", "list", "create", "update", "delete"}
		// list on the policed kinds, one rule per API group.
		var rules []rbacv1.PolicyRule
		for _, g := range r.want.groups {
			rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{g.group}, Resources: g.resources, Verbs: []string{"list"}})
		}
		// With workloads: the namespaces (to find the mesh's) and the
		// workload kinds, one rule per API group.
		if r.want.workloads {
			rules = append(rules,
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}},
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
				rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}, Verbs: []string{"list"}},
				rbacv1.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: []string{"list"}},
			)
		}
		wantClusterRoles[sa.Name+"-audit"] = append(rules, reports)
	}

	subject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: r.namespace}
	for _, kind := range []struct {
		role, binding string
		want          map[string][]rbacv1.PolicyRule
	}{
		{"Role", "RoleBinding", wantRoles},
		{"ClusterRole", "ClusterRoleBinding", wantClusterRoles},
	} {
		got := map[string][]rbacv1.PolicyRule{}
		for _, obj := range r.objs.Kind(kind.role) {
			var role rbacv1.ClusterRole // a Role has the same fields
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &role); err != nil {
				t.Fatal(err)
			}
			if ns := cmp.Or(roleNamespaces[role.Name], r.namespace); kind.role == "Role" && role.Namespace != ns {
				t.Errorf("Role %s in namespace %q, want %s", role.Name, role.Namespace, ns)
			}
			got[role.Name] = role.Rules
		}
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(kind.want))) {
			t.Errorf("%ss %v, want %v", kind.role, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(kind.want)))
		}
		for name, rules := range kind.want {
			if g, ok := got[name]; ok && fmt.Sprint(g) != fmt.Sprint(rules) {
				t.Errorf("%s %s rules:\n  %v\nwant:\n  %v", kind.role, name, g, rules)
			}
		}
		bound := map[string]bool{}
		for _, obj := range r.objs.Kind(kind.binding) {
			var b rbacv1.RoleBinding // a ClusterRoleBinding has the same fields
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &b); err != nil {
				t.Fatal(err)
			}
			if b.RoleRef.Kind != kind.role || kind.want[b.RoleRef.Name] == nil || b.Name != b.RoleRef.Name ||
				len(b.Subjects) != 1 || b.Subjects[0] != subject {
				t.Errorf("%s %s binds %s %s to %v, want a %s of the chart, of the same name, to %+v", kind.binding, b.Name, b.RoleRef.Kind, b.RoleRef.Name, b.Subjects, kind.role, subject)
			}
			bound[b.RoleRef.Name] = true
		}
		for name := range kind.want {
			if !bound[name] {
				t.Errorf("%s %s is bound by no %s", kind.role, name, kind.binding)
			}
		}
	}
}

// selfManagedRules checks the self-managed flags and returns the rules of
// its Role and ClusterRole: exactly what the certificate writer needs,
// limited to the chart's Secret, Lease and webhook configurations.
func (r rendered) selfManagedRules(t *testing.T, c *corev1.Container) (role, clusterRole []rbacv1.PolicyRule) {
	t.Helper()
	secret, _ := flag(c.Args, "cert-secret")
	lease, _ := flag(c.Args, "leader-election-id")
	mwc, _ := flag(c.Args, "mutating-webhook-configuration")
	vwc, _ := flag(c.Args, "validating-webhook-configuration")
	secretNS, secretName, _ := strings.Cut(secret, "/")
	if secretNS != r.namespace {
		t.Errorf("--cert-secret=%s, want it in the release namespace %s", secret, r.namespace)
	}
	for _, w := range r.webhooks(t) {
		name := strings.Fields(w.config)[1]
		if (strings.HasPrefix(w.config, "Mutating") && name != mwc) || (strings.HasPrefix(w.config, "Validating") && name != vwc) {
			t.Errorf("%s is not the one the Deployment's flags name (--mutating-webhook-configuration=%s, --validating-webhook-configuration=%s)", w.config, mwc, vwc)
		}
	}
	dns, _ := flag(c.Args, "cert-dns-names")
	if want := r.service(t).Name + "." + r.namespace + ".svc"; !slices.Contains(strings.Split(dns, ","), want) {
		t.Errorf("--cert-dns-names=%s lacks %s", dns, want)
	}
	for _, f := range []string{"certs", "leader-election-namespace", "cert-validity", "ca-validity"} {
		if _, ok := flag(c.Args, f); !ok {
			t.Errorf("self-managed mode: the Deployment lacks --%s: %v", f, c.Args)
		}
	}
	if v, _ := flag(c.Args, "certs"); v != "self-managed" {
		t.Errorf("--certs=%s, want self-managed", v)
	}
	if _, ok := flag(c.Args, "cert-dir"); ok {
		t.Errorf("self-managed mode passes --cert-dir, a files-mode flag: %v", c.Args)
	}
	role = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{secretName}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{lease}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	clusterRole = []rbacv1.PolicyRule{{
		APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
		ResourceNames: slices.Compact([]string{mwc, vwc}), Verbs: []string{"get", "list", "watch", "update", "patch"},
	}}
	return role, clusterRole
}

// checkConfig: the ConfigMap holds a configuration egress-guard's own parser
// accepts, at the path --config reads, exempting kube-system and the
// release namespace, with the enforcement asked for.
func (r rendered) checkConfig(t *testing.T) {
	d, c := r.deployment(t)
	file, ok := flag(c.Args, "config")
	if !ok {
		t.Fatalf("the Deployment does not pass --config: %v", c.Args)
	}
	v := volumeAt(d, c, path.Dir(file))
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("--config=%s is not in a mounted ConfigMap", file)
	}
	var cm corev1.ConfigMap
	obj := r.objs.Get("ConfigMap", v.ConfigMap.Name)
	if obj == nil {
		t.Fatalf("the config volume names ConfigMap %s, which the chart does not render", v.ConfigMap.Name)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &cm); err != nil {
		t.Fatal(err)
	}
	data, ok := cm.Data[path.Base(file)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s (keys: %v)", cm.Name, path.Base(file), slices.Sorted(maps.Keys(cm.Data)))
	}
	// The policed kinds, as the values list them. Read apart from
	// config.Parse, so that what the chart writes is checked on its own.
	var doc struct {
		Kinds     []policedKind `json:"kinds"`
		Workloads struct {
			Enabled *bool `json:"enabled"`
		} `json:"workloads"`
	}
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatalf("ConfigMap %s: %s: %v", cm.Name, path.Base(file), err)
	}
	if !slices.Equal(doc.Kinds, r.want.kinds) {
		t.Errorf("the configuration's kinds %+v, want %+v", doc.Kinds, r.want.kinds)
	}
	// Written out, whatever serve's default.
	if e := doc.Workloads.Enabled; e == nil || *e != r.want.workloads {
		got := "unset"
		if e != nil {
			got = strconv.FormatBool(*e)
		}
		t.Errorf("the configuration's workloads.enabled is %s, want %v", got, r.want.workloads)
	}
	cfg, err := config.Parse([]byte(data))
	if err != nil {
		t.Fatalf("egress-guard refuses the rendered configuration: %v\n%s", err, data)
	}
	for _, ns := range []string{"kube-system", r.namespace} {
		if !slices.Contains(cfg.ExemptNamespaces, ns) {
			t.Errorf("the configuration does not exempt %s: exemptNamespaces %v", ns, cfg.ExemptNamespaces)
		}
	}
	if cfg.Workloads.On() != r.want.workloads {
		t.Errorf("egress-guard reads workloads %+v: policed %v, want %v", cfg.Workloads, cfg.Workloads.On(), r.want.workloads)
	}
	if string(cfg.Enforcement) != r.want.enforcement {
		t.Errorf("enforcement %s, want %s", cfg.Enforcement, r.want.enforcement)
	}
	if !slices.Equal(cfg.Policies.AllowedBuiltins, r.want.allowedBuiltins) || !slices.Equal(cfg.Policies.AllowedHosts, r.want.allowedHosts) {
		t.Errorf("policies %+v, want allowedBuiltins %v allowedHosts %v", cfg.Policies, r.want.allowedBuiltins, r.want.allowedHosts)
	}
	if on := cfg.Audit.Every() > 0; on != (r.want.audit != "") || (on && cfg.Audit.ReportAPI != r.want.audit) {
		t.Errorf("audit interval %q report API %q, want the audit %v with %q", cfg.Audit.Interval, cfg.Audit.ReportAPI, r.want.audit != "", r.want.audit)
	}
}

// reportCRDFiles are the files of files/crds, by CRD name.
var reportCRDFiles = map[string]string{
	openReportsCRD:  "openreports.io_reports.yaml",
	policyReportCRD: "wgpolicyk8s.io_policyreports.yaml",
}

// checkReportCRDs: the report CRDs asked for, each the file of files/crds
// as published but for the annotation that keeps it on helm uninstall.
func (r rendered) checkReportCRDs(t *testing.T) {
	crds := r.objs.Kind("CustomResourceDefinition")
	var names []string
	for _, crd := range crds {
		names = append(names, crd.GetName())
	}
	if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(r.want.reportCRDs))) {
		t.Errorf("CRDs %v, want %v", names, r.want.reportCRDs)
	}
	for _, crd := range crds {
		file, ok := reportCRDFiles[crd.GetName()]
		if !ok {
			continue
		}
		data, err := os.ReadFile(filepath.Join(env.chart, "files", "crds", file))
		if err != nil {
			t.Fatal(err)
		}
		var published map[string]any
		if err := yaml.Unmarshal(data, &published); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		got := crd.DeepCopy()
		if policy := got.GetAnnotations()["helm.sh/resource-policy"]; policy != "keep" {
			t.Errorf("CRD %s: helm.sh/resource-policy %q, want keep (helm uninstall would delete every report)", crd.GetName(), policy)
		}
		unstructured.RemoveNestedField(got.Object, "metadata", "annotations", "helm.sh/resource-policy")
		if !reflect.DeepEqual(harness.Canonical(got.Object), harness.Canonical(published)) {
			t.Errorf("CRD %s differs from files/crds/%s beyond the resource-policy annotation", crd.GetName(), file)
		}
	}
}

// checkPolicies: platform policies are rendered into a ConfigMap mounted
// at the directory --policies reads; none means no flag and no ConfigMap.
func (r rendered) checkPolicies(t *testing.T) {
	d, c := r.deployment(t)
	dir, ok := flag(c.Args, "policies")
	if len(r.want.policies) == 0 {
		if ok {
			t.Errorf("no policies given, yet --policies=%s", dir)
		}
		if n := len(r.objs.Kind("ConfigMap")); n != 1 {
			t.Errorf("no policies given, yet %d ConfigMaps: %v", n, r.objs.Kind("ConfigMap").Refs())
		}
		return
	}
	v := volumeAt(d, c, dir)
	if !ok || v == nil || v.ConfigMap == nil {
		t.Fatalf("--policies=%q is not a mounted ConfigMap", dir)
	}
	var cm corev1.ConfigMap
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.objs.Get("ConfigMap", v.ConfigMap.Name).Object, &cm); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(cm.Data, r.want.policies) {
		t.Errorf("ConfigMap %s holds %q, want %q", cm.Name, cm.Data, r.want.policies)
	}
}

// checkDeployment: replicas, spreading, disruption budget, a locked-down
// container, probes on the health port, and a grace period longer than the
// preStop pause and the drain together.
func (r rendered) checkDeployment(t *testing.T) {
	d, c := r.deployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != r.want.replicas {
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, r.want.replicas)
	}
	pod := d.Spec.Template.Spec
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want a read-only root filesystem, no privilege escalation, every capability dropped", sc)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod securityContext %+v: want runAsNonRoot", pod.SecurityContext)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	health, _ := flag(c.Args, "health-probe-bind-address")
	_, port, _ := strings.Cut(health, ":")
	for what, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != what || containerPort(c, p.HTTPGet.Port.String()) != port {
			t.Errorf("probe for %s: %+v, want an HTTP GET of %s on the --health-probe-bind-address port %s", what, p, what, port)
		}
	}
	shutdown, _ := flag(c.Args, "shutdown-timeout")
	drain, err := time.ParseDuration(shutdown)
	if err != nil {
		t.Fatalf("--shutdown-timeout=%q: %v", shutdown, err)
	}
	for name, value := range r.want.requestFlags {
		if got, ok := flag(c.Args, name); !ok || got != value {
			t.Errorf("--%s=%q (set %v), want %q", name, got, ok, value)
		}
	}
	evaluation, errEval := time.ParseDuration(r.want.requestFlags["evaluation-timeout"])
	write, errWrite := time.ParseDuration(r.want.requestFlags["write-timeout"])
	if errEval != nil || errWrite != nil || write <= evaluation {
		t.Errorf("--write-timeout %v must exceed --evaluation-timeout %v (%v %v)", write, evaluation, errEval, errWrite)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop sleep: the pod would stop serving before its endpoint is removed")
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= pause+drain {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed the preStop sleep %v plus --shutdown-timeout %v", grace, pause, drain)
	}

	anti := pod.Affinity
	switch r.want.antiAffinity {
	case "soft":
		if anti == nil || anti.PodAntiAffinity == nil || len(anti.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("affinity %+v: want a preferred pod anti-affinity", anti)
		}
	case "hard":
		if anti == nil || anti.PodAntiAffinity == nil || len(anti.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("affinity %+v: want a required pod anti-affinity", anti)
		}
	case "none":
		if anti != nil && anti.PodAntiAffinity != nil {
			t.Errorf("affinity %+v: want no pod anti-affinity", anti)
		}
	}
	if anti != nil && anti.PodAntiAffinity != nil {
		terms := anti.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for _, p := range anti.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, p.PodAffinityTerm)
		}
		for _, term := range terms {
			if !selects(t, term.LabelSelector, d.Spec.Template.Labels) || term.TopologyKey != "kubernetes.io/hostname" {
				t.Errorf("anti-affinity term %+v does not keep the pods apart by node", term)
			}
		}
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		if !selects(t, tsc.LabelSelector, d.Spec.Template.Labels) {
			t.Errorf("topology spread constraint %+v does not select the pods", tsc)
		}
	}

	pdbs := r.objs.Kind("PodDisruptionBudget")
	if r.want.pdb == "" {
		if len(pdbs) > 0 {
			t.Errorf("PodDisruptionBudget disabled, yet rendered: %v", pdbs.Refs())
		}
		return
	}
	var pdb policyv1.PodDisruptionBudget
	r.one(t, "PodDisruptionBudget", &pdb)
	got := ""
	if pdb.Spec.MinAvailable != nil {
		got = "minAvailable=" + pdb.Spec.MinAvailable.String()
	}
	if pdb.Spec.MaxUnavailable != nil {
		got += "maxUnavailable=" + pdb.Spec.MaxUnavailable.String()
	}
	if got != r.want.pdb || !selects(t, pdb.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget %s selector %v, want %s selecting the pods", got, pdb.Spec.Selector, r.want.pdb)
	}
}

// containerPort resolves a probe port (number or name) to a port number.
func containerPort(c *corev1.Container, port string) string {
	for _, p := range c.Ports {
		if p.Name == port {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	return port
}

func selects(t *testing.T, ls *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Errorf("label selector %v: %v", ls, err)
		return false
	}
	return !sel.Empty() && sel.Matches(labels.Set(podLabels))
}

// checkMetrics: the metrics Service targets the --metrics-bind-address
// port, and the ServiceMonitor selects that Service (and not the webhook's).
func (r rendered) checkMetrics(t *testing.T) {
	_, c := r.deployment(t)
	services := r.objs.Kind("Service")
	monitors := r.objs.Kind("ServiceMonitor")
	if !r.want.metrics {
		if len(services) != 1 || len(monitors) != 0 {
			t.Errorf("metrics off, yet %v", append(services, monitors...).Refs())
		}
		return
	}
	if len(services) != 2 || len(monitors) != 1 {
		t.Fatalf("want the webhook and metrics Services and a ServiceMonitor, got %v", append(services, monitors...).Refs())
	}
	bind, _ := flag(c.Args, "metrics-bind-address")
	_, port, _ := strings.Cut(bind, ":")
	var metricsSvc *corev1.Service
	for _, obj := range services {
		var s corev1.Service
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &s); err != nil {
			t.Fatal(err)
		}
		ls := &metav1.LabelSelector{}
		sel, _, _ := unstructured.NestedMap(monitors[0].Object, "spec", "selector")
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, ls); err != nil {
			t.Fatal(err)
		}
		if selects(t, ls, s.Labels) {
			if metricsSvc != nil {
				t.Errorf("ServiceMonitor selects both %s and %s", metricsSvc.Name, s.Name)
			}
			metricsSvc = &s
		}
	}
	if metricsSvc == nil {
		t.Fatalf("the ServiceMonitor selects no Service of the chart")
	}
	if got := containerPort(c, metricsSvc.Spec.Ports[0].TargetPort.String()); got != port {
		t.Errorf("metrics Service %s targets port %s, --metrics-bind-address=%s", metricsSvc.Name, got, bind)
	}
}
