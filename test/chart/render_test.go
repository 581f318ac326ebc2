//go:build e2e

package chart

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/test/harness"
	"github.com/egress-guard/egress-guard/webhook/config"
)

// renderNamespace is the release namespace of the render cases.
const renderNamespace = "eg-render"

// platformPolicy is a platform Rego module, the example in docs/policy-contract.md.
const platformPolicy = `package egressguard.rules.platform

deny contains {
	"code": "PLT001",
	"field": "metadata.labels.team",
	"message": "metadata.labels.team: every egress object names its team",
	"action": "warn",
} if {
	not input.object.metadata.labels.team
}
`

// renderCase is one documented option of values.yaml, or the defaults.
type renderCase struct {
	name   string
	set    []string // helm --set
	values string   // a values file, when not empty
	want   want
}

// want is what the rendered chart must say for a case.
type want struct {
	mode          string // certificates.mode
	issuer        string // issuerRef of the serving Certificate ("" = the chart's CA Issuer)
	issuerKind    string
	enforcement   string
	failurePolicy string
	sideEffects   string
	timeout       int32
	optOutLabel   string
	excluded      []string          // more namespaces never sent to the webhooks
	required      map[string]string // labels a namespace needs to be sent
	replicas      int32
	policies      map[string]string
	metrics       bool // metrics Service and ServiceMonitor
	antiAffinity  string
	pdb           string // "minAvailable=1", "maxUnavailable=1" or "" (none)
	events        bool   // serve --events
	inventory     bool   // serve --inventory
	audit         string // the report API of the periodic audit; "" = no audit
	auditLease    string // audit.leaderElectionID
	reportCRDs    []string
	// requestFlags are serve's request bounds, flag name -> value.
	requestFlags map[string]string
	// allowedBuiltins and allowedHosts are config.policies.
	allowedBuiltins, allowedHosts []string
	// kinds is config.kinds; groups are the API groups the webhook rules and
	// the audit's list rules name, in order of first appearance, each with
	// its kinds' resources in list order.
	kinds  []policedKind
	groups []apiGroup
	// workloads is config.workloads.enabled: the workload webhooks and,
	// with the audit, list on namespaces and the workload kinds.
	workloads bool
	// workloadsFailurePolicy is the failurePolicy of the workload webhooks.
	workloadsFailurePolicy string
}

// policedKind is an entry of config.kinds.
type policedKind struct {
	Group    string `json:"group"`
	Version  string `json:"version"`
	Kind     string `json:"kind"`
	Resource string `json:"resource"`
}

// apiGroup is an API group of config.kinds and its kinds' resources.
type apiGroup struct {
	group     string
	resources []string
}

// defaultKinds are the kinds of values.yaml, those egress-guard's own rules
// read.
// defaultKinds are the kinds serve polices when its configuration names
// none (config.DefaultKinds): the chart's default must be the same list.
func defaultKinds() []policedKind {
	var out []policedKind
	for _, k := range config.DefaultKinds {
		out = append(out, policedKind{k.Group, k.Version, k.Kind, k.Resource})
	}
	return out
}

// defaults is what values.yaml says.
func defaults() want {
	return want{
		mode:          "cert-manager",
		enforcement:   "deny",
		failurePolicy: "Fail",
		sideEffects:   "None",
		timeout:       5,
		optOutLabel:   "egressguard.io/ignore",
		replicas:      3,
		antiAffinity:  "soft",
		pdb:           "minAvailable=1",
		events:        true,
		inventory:     true,
		auditLease:    "egress-guard-audit",
		reportCRDs:    []string{openReportsCRD},
		requestFlags: map[string]string{
			"evaluation-timeout": "8s", "max-concurrent-requests": "0",
			"read-header-timeout": "10s", "read-timeout": "30s", "write-timeout": "30s", "idle-timeout": "90s",
		},
		kinds: defaultKinds(),
		groups: []apiGroup{
			{"networking.istio.io", []string{"serviceentries", "virtualservices", "destinationrules", "sidecars", "envoyfilters", "proxyconfigs"}},
			{"extensions.istio.io", []string{"wasmplugins"}},
		},
		workloads:              true,
		workloadsFailurePolicy: "Fail",
	}
}

// The report CRDs of files/crds.
const (
	openReportsCRD  = "reports.openreports.io"
	policyReportCRD = "policyreports.wgpolicyk8s.io"
)

func with(change func(*want)) want {
	w := defaults()
	change(&w)
	return w
}

// renderCases covers the default values and each documented option.
func renderCases() []renderCase {
	return []renderCase{
		{name: "defaults", want: defaults()},
		{
			name: "cert-manager-existing-issuer",
			set:  []string{"certificates.certManager.issuerRef.name=platform-ca", "certificates.certManager.issuerRef.kind=ClusterIssuer"},
			want: with(func(w *want) { w.issuer, w.issuerKind = "platform-ca", "ClusterIssuer" }),
		},
		{
			name: "cert-manager-rsa-key",
			set:  []string{"certificates.certManager.privateKey.algorithm=RSA", "certificates.certManager.privateKey.size=3072", "certificates.certManager.duration=720h", "certificates.certManager.renewBefore=240h"},
			want: defaults(),
		},
		{
			name: "self-managed",
			set:  []string{"certificates.mode=self-managed", "certificates.selfManaged.certValidity=720h", "certificates.selfManaged.leaderElectionID=eg-certs"},
			want: with(func(w *want) { w.mode = "self-managed" }),
		},
		{
			name:   "policies",
			values: "policies:\n  platform.rego: |\n" + harness.Indent(strings.TrimRight(platformPolicy, "\n"), "    ") + "\n",
			want:   with(func(w *want) { w.policies = map[string]string{"platform.rego": platformPolicy} }),
		},
		{
			name:   "restricted-builtins-allowed",
			values: "config:\n  policies:\n    allowedBuiltins: [http.send, net.lookup_ip_addr]\n    allowedHosts: [policy-api.platform.svc]\n",
			want: with(func(w *want) {
				w.allowedBuiltins = []string{"http.send", "net.lookup_ip_addr"}
				w.allowedHosts = []string{"policy-api.platform.svc"}
			}),
		},
		{
			name: "metrics",
			set:  []string{"metrics.service.enabled=true", "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prometheus"},
			want: with(func(w *want) { w.metrics = true }),
		},
		{
			name: "failure-policy-ignore",
			set:  []string{"webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=10"},
			want: with(func(w *want) { w.failurePolicy, w.timeout = "Ignore", 10 }),
		},
		{
			// The workload webhooks keep their own failure policy, and the
			// others theirs.
			name: "workloads-failure-policy-ignore",
			set:  []string{"webhook.workloadsFailurePolicy=Ignore"},
			want: with(func(w *want) { w.workloadsFailurePolicy = "Ignore" }),
		},
		{
			// No workload webhooks, and the audit lists no workloads.
			name: "workloads-off",
			set:  []string{"config.workloads.enabled=false", "config.audit.interval=1h"},
			want: with(func(w *want) { w.workloads, w.audit = false, "openreports" }),
		},
		{
			name: "opt-out-label-and-selector",
			set: []string{
				"webhook.optOutLabel=example.com/egress-unguarded",
				"webhook.excludedNamespaces={legacy,batch}",
				"webhook.namespaceSelector.matchLabels.istio-injection=enabled",
			},
			want: with(func(w *want) {
				w.optOutLabel = "example.com/egress-unguarded"
				w.excluded = []string{"legacy", "batch"}
				w.required = map[string]string{"istio-injection": "enabled"}
			}),
		},
		{
			name: "enforcement-warn",
			set:  []string{"config.enforcement=warn"},
			want: with(func(w *want) { w.enforcement = "warn" }),
		},
		{
			name: "enforcement-dryrun",
			set:  []string{"config.enforcement=dryrun", "webhook.sideEffects=NoneOnDryRun"},
			want: with(func(w *want) { w.enforcement, w.sideEffects = "dryrun", "NoneOnDryRun" }),
		},
		{
			name: "allow-list",
			values: `config:
  exemptNamespaces: []
  allow:
  - hosts: ["test.com"]
    ports: [80, 443]
    namespaces: ["default"]
    origination: {mode: MUTUAL, port: 443, credentialName: test.client, sni: test.com}
`,
			want: defaults(),
		},
		{
			name: "enforcement-overrides",
			values: `config:
  enforcement: deny
  overrides:
  - rules: [EGR202]
    namespaces: [team-a]
    action: dryrun
  - namespaces: [team-b]
    action: warn
`,
			want: defaults(),
		},
		{
			name: "one-replica-hard-anti-affinity",
			set:  []string{"replicas=1", "podAntiAffinity=hard", "podDisruptionBudget.minAvailable=null", "podDisruptionBudget.maxUnavailable=1", "topologySpread.enabled=false"},
			want: with(func(w *want) { w.replicas, w.antiAffinity, w.pdb = 1, "hard", "maxUnavailable=1" }),
		},
		{
			name: "audit-and-events",
			set:  []string{"config.audit.interval=1h"},
			want: with(func(w *want) { w.audit = "openreports" }),
		},
		{
			name: "audit-without-events",
			set:  []string{"config.audit.interval=5m", "config.audit.reportAPI=openreports", "events.enabled=false", "audit.leaderElectionID=eg-audit"},
			want: with(func(w *want) { w.audit, w.events, w.auditLease = "openreports", false, "eg-audit" }),
		},
		{
			name: "audit-with-wgpolicyk8s",
			set: []string{
				"config.audit.interval=30m", "config.audit.reportAPI=wgpolicyk8s",
				"reports.crds.policyReport=true", "reports.crds.openreports=false",
			},
			want: with(func(w *want) { w.audit, w.reportCRDs = "wgpolicyk8s", []string{policyReportCRD} }),
		},
		{
			name: "self-managed-audit-wgpolicyk8s",
			set: []string{
				"certificates.mode=self-managed", "config.audit.interval=2h30m", "config.audit.reportAPI=wgpolicyk8s",
				"reports.crds.policyReport=true", "events.enabled=false",
			},
			want: with(func(w *want) {
				w.mode, w.audit, w.events = "self-managed", "wgpolicyk8s", false
				w.reportCRDs = []string{openReportsCRD, policyReportCRD}
			}),
		},
		{
			// Nothing calls the API: no RBAC, no token.
			name: "events-off-inventory-off-audit-0s",
			set:  []string{"events.enabled=false", "inventory.enabled=false", "config.audit.interval=0s", "reports.crds.openreports=false"},
			want: with(func(w *want) { w.events, w.inventory, w.reportCRDs = false, false, nil }),
		},
		{
			name: "inventory-only",
			set:  []string{"events.enabled=false", "config.audit.interval=0s"},
			want: with(func(w *want) { w.events = false }),
		},
		{
			name: "request-bounds",
			set: []string{
				"requests.evaluationTimeout=3s", "requests.maxConcurrent=16", "requests.readHeaderTimeout=5s",
				"requests.readTimeout=15s", "requests.writeTimeout=20s", "requests.idleTimeout=2m",
			},
			want: with(func(w *want) {
				w.requestFlags = map[string]string{
					"evaluation-timeout": "3s", "max-concurrent-requests": "16",
					"read-header-timeout": "5s", "read-timeout": "15s", "write-timeout": "20s", "idle-timeout": "2m",
				}
			}),
		},
		{
			// A kind of another group between two of the first: one rule
			// per group, in order of first appearance; the audit lists them.
			name: "kinds-gateway-wasmplugin",
			values: `config:
  audit: {interval: 1h}
  kinds:
  - {group: networking.istio.io, version: v1, kind: ServiceEntry, resource: serviceentries}
  - {group: networking.istio.io, version: v1, kind: VirtualService, resource: virtualservices}
  - {group: networking.istio.io, version: v1, kind: DestinationRule, resource: destinationrules}
  - {group: extensions.istio.io, version: v1alpha1, kind: WasmPlugin, resource: wasmplugins}
  - {group: networking.istio.io, version: v1, kind: Gateway, resource: gateways}
`,
			want: with(func(w *want) {
				w.audit = "openreports"
				w.kinds = append(defaultKinds()[:3],
					policedKind{"extensions.istio.io", "v1alpha1", "WasmPlugin", "wasmplugins"},
					policedKind{"networking.istio.io", "v1", "Gateway", "gateways"})
				w.groups = []apiGroup{
					{"networking.istio.io", []string{"serviceentries", "virtualservices", "destinationrules", "gateways"}},
					{"extensions.istio.io", []string{"wasmplugins"}},
				}
			}),
		},
		{
			// Without VirtualServices the validating webhook gets no
			// deletion.
			name: "kinds-without-virtualservice",
			values: `config:
  kinds:
  - {group: networking.istio.io, version: v1, kind: ServiceEntry, resource: serviceentries}
  - {group: networking.istio.io, version: v1, kind: DestinationRule, resource: destinationrules}
`,
			want: with(func(w *want) {
				w.kinds = []policedKind{defaultKinds()[0], defaultKinds()[2]}
				w.groups = []apiGroup{{"networking.istio.io", []string{"serviceentries", "destinationrules"}}}
			}),
		},
		{
			name: "no-pdb-no-anti-affinity",
			set:  []string{"podDisruptionBudget.enabled=false", "podAntiAffinity=none"},
			want: with(func(w *want) { w.antiAffinity, w.pdb = "none", "" }),
		},
	}
}

// helmValuesArgs are the --set and -f arguments of a case.
func helmValuesArgs(t *testing.T, c renderCase) []string {
	t.Helper()
	var args []string
	if c.values != "" {
		path := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(path, []byte(c.values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", path)
	}
	for _, s := range c.set {
		args = append(args, "--set", s)
	}
	return args
}

func TestLint(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			r := env.helmRun(append([]string{"lint", "--strict", env.chart, "--namespace", renderNamespace}, helmValuesArgs(t, c)...)...)
			if r.Err != nil {
				t.Fatalf("helm lint failed:\n%s", r)
			}
			if !strings.Contains(r.Stdout, "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint did not report the chart as linted:\n%s", r)
			}
		})
	}
}

// render runs helm template for the case and returns the objects and the
// path of the rendered file.
func render(t *testing.T, release, namespace string, args []string) (harness.Objects, string) {
	t.Helper()
	r := env.helmRun(append([]string{"template", release, env.chart, "--namespace", namespace}, args...)...)
	if r.Err != nil {
		t.Fatalf("helm template failed:\n%s", r)
	}
	objs, err := harness.ParseObjects([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("helm template output: %v\n%s", err, r.Stdout)
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(path, []byte(r.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return objs, path
}

func TestRender(t *testing.T) {
	env.ensureNamespace(t, renderNamespace, nil)
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			objs, path := render(t, "eg", renderNamespace, helmValuesArgs(t, c))
			r := rendered{objs: objs, namespace: renderNamespace, want: c.want}
			t.Run("webhooks", r.checkWebhooks)
			t.Run("certificates", r.checkCertificates)
			t.Run("rbac", r.checkRBAC)
			t.Run("config", r.checkConfig)
			t.Run("policies", r.checkPolicies)
			t.Run("deployment", r.checkDeployment)
			t.Run("metrics", r.checkMetrics)
			t.Run("report-crds", r.checkReportCRDs)
			t.Run("dry-run", func(t *testing.T) { dryRun(t, objs, path) })
		})
	}
}

// dryRun sends every rendered object to the API server with kubectl apply
// --dry-run=server and checks that each one was accepted.
func dryRun(t *testing.T, objs harness.Objects, path string) {
	r := env.kubectl("apply", "--dry-run=server", "-o", "name", "-f", path)
	if r.Err != nil {
		t.Fatalf("the API server refused rendered objects:\n%s", r)
	}
	accepted := strings.Fields(r.Stdout)
	if len(accepted) != len(objs) {
		t.Errorf("the API server accepted %d objects, the chart rendered %d:\naccepted: %v\nrendered: %v", len(accepted), len(objs), accepted, objs.Refs())
	}
	for _, obj := range objs {
		// kubectl -o name: kind.group/name, or kind/name for the core group.
		kind, name := strings.ToLower(obj.GetKind()), "/"+obj.GetName()
		if !slices.ContainsFunc(accepted, func(a string) bool {
			return (strings.HasPrefix(a, kind+".") || strings.HasPrefix(a, kind+"/")) && strings.HasSuffix(a, name)
		}) {
			t.Errorf("%s %s is not among the objects the API server accepted: %v", obj.GetKind(), obj.GetName(), accepted)
		}
	}
}

// TestSchemaKnowsRestrictedBuiltins: the chart's schema offers exactly the
// built-ins egress-guard restricts.
func TestSchemaKnowsRestrictedBuiltins(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(env.chart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config struct {
				Properties struct {
					Policies struct {
						Properties struct {
							AllowedBuiltins struct {
								Items struct {
									Enum []string `json:"enum"`
								} `json:"items"`
							} `json:"allowedBuiltins"`
						} `json:"properties"`
					} `json:"policies"`
				} `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(schema.Properties.Config.Properties.Policies.Properties.AllowedBuiltins.Items.Enum))
	if want := slices.Sorted(maps.Keys(config.RestrictedBuiltins)); !slices.Equal(got, want) {
		t.Fatalf("the schema allows %v, egress-guard restricts %v", got, want)
	}
}

func TestSchemaRejects(t *testing.T) {
	for _, c := range []struct {
		set  string
		want []string // in helm's error output
	}{
		{"replicas=0", []string{"/replicas", "minimum"}},
		{"replicas=three", []string{"/replicas", "want integer"}},
		{"config.enforcement=block", []string{"/config/enforcement", "'deny', 'warn', 'dryrun'"}},
		{"config.allow[0].hosts[0]=Not_A_Host", []string{"/config/allow/0/hosts/0", "Not_A_Host"}},
		{"config.allow[0].hosts[0]=a.com,config.allow[0].origination.mode=PLAIN,config.allow[0].origination.port=443", []string{"/config/allow/0/origination/mode", "'SIMPLE', 'MUTUAL'"}},
		{"config.allow[0].hosts[0]=a.com,config.allow[0].addresses[0]=ingress.example.com", []string{"/config/allow/0/addresses/0", "ingress.example.com"}},
		{"config.gateway.ports.http=70000", []string{"/config/gateway/ports/http", "maximum"}},
		{"config.exemptNamespaces[0]=Kube_System", []string{"/config/exemptNamespaces/0", "Kube_System"}},
		{"config.unknownField=1", []string{"/config", "'unknownField' not allowed"}},
		{"webhook.failurePolicy=Never", []string{"/webhook/failurePolicy", "'Fail', 'Ignore'"}},
		{"webhook.workloadsFailurePolicy=Never", []string{"/webhook/workloadsFailurePolicy", "'Fail', 'Ignore'"}},
		{"config.workloads.enabled=yes", []string{"/config/workloads/enabled", "want boolean"}},
		{"config.workloads.namespaces[0]=team-a", []string{"/config/workloads", "'namespaces' not allowed"}},
		{"webhook.sideEffects=Some", []string{"/webhook/sideEffects", "'None', 'NoneOnDryRun'"}},
		{"webhook.timeoutSeconds=31", []string{"/webhook/timeoutSeconds", "maximum"}},
		{"webhook.optOutLabel=not a label", []string{"/webhook/optOutLabel", "not a label"}},
		{"certificates.mode=vault", []string{"/certificates/mode", "'cert-manager', 'self-managed'"}},
		{"certificates.certManager.issuerRef.kind=Vault", []string{"/certificates/certManager/issuerRef/kind", "'Issuer', 'ClusterIssuer'"}},
		{"certificates.certManager.duration=90days", []string{"/certificates/certManager/duration", "90days"}},
		{"image.pullPolicy=Sometimes", []string{"/image/pullPolicy"}},
		{"podAntiAffinity=maybe", []string{"/podAntiAffinity", "'soft', 'hard', 'none'"}},
		{"logLevel=verbose", []string{"/logLevel"}},
		{"metrics.service.enabled=yes", []string{"/metrics/service/enabled", "want boolean"}},
		{`policies.platform\.txt=package x`, []string{"/policies", "'platform.txt' not allowed"}},
		{`policies.platform_test\.rego=package x`, []string{"/policies/platform_test.rego"}},
		{"config.overrides[0].rules[0]=EGR202,config.overrides[0].action=block", []string{"/config/overrides/0/action", "'deny', 'warn', 'dryrun'"}},
		{"config.overrides[0].rules[0]=egr202,config.overrides[0].action=warn", []string{"/config/overrides/0/rules/0", "egr202"}},
		{"config.overrides[0].action=warn", []string{"/config/overrides/0"}},
		{"config.overrides[0].rules[0]=EGR202", []string{"/config/overrides/0", "action"}},
		{"config.audit.reportAPI=kyverno", []string{"/config/audit/reportAPI", "'openreports', 'wgpolicyk8s'"}},
		{"config.audit.interval=3600", []string{"/config/audit/interval", "want string"}},
		{"config.audit.interval=1day", []string{"/config/audit/interval", "1day"}},
		{"config.audit.every=1h", []string{"/config/audit", "'every' not allowed"}},
		{"config.policies.allowedBuiltins[0]=http.sned", []string{"/config/policies/allowedBuiltins/0", "'http.send'"}},
		{"config.policies.allowedBuiltins[0]=http.send", []string{"/config/policies", "allowedHosts"}},
		{"config.policies.allowedNet[0]=a.com", []string{"/config/policies", "'allowedNet' not allowed"}},
		{"events.enabled=yes", []string{"/events/enabled", "want boolean"}},
		{"inventory.enabled=yes", []string{"/inventory/enabled", "want boolean"}},
		{"audit.leaderElectionID=Audit_Lease", []string{"/audit/leaderElectionID", "Audit_Lease"}},
		{"audit.interval=1h", []string{"/audit", "'interval' not allowed"}},
		{"reports.crds.openreports=maybe", []string{"/reports/crds/openreports", "want boolean"}},
		{"reports.crds.policyReports=true", []string{"/reports/crds", "'policyReports' not allowed"}},
		{"requests.evaluationTimeout=8", []string{"/requests/evaluationTimeout", "want string"}},
		{"requests.writeTimeout=30sec", []string{"/requests/writeTimeout", "30sec"}},
		{"requests.readTimeout=soon", []string{"/requests/readTimeout", "soon"}},
		{"requests.maxConcurrent=-1", []string{"/requests/maxConcurrent", "minimum"}},
		{"requests.workers=4", []string{"/requests", "'workers' not allowed"}},
		{"config.kinds[0].group=networking.istio.io,config.kinds[0].version=v1,config.kinds[0].kind=Gateway", []string{"/config/kinds/0", "missing property 'resource'"}},
		{"config.kinds[0].group=networking.istio.io,config.kinds[0].version=v1,config.kinds[0].kind=Gateway,config.kinds[0].resource=Gateways", []string{"/config/kinds/0/resource", "Gateways"}},
		{"config.kinds[0].group=,config.kinds[0].version=v1,config.kinds[0].kind=Pod,config.kinds[0].resource=pods", []string{"/config/kinds/0/group"}},
		{"config.kinds[0].group=networking.istio.io,config.kinds[0].version=1,config.kinds[0].kind=Gateway,config.kinds[0].resource=gateways", []string{"/config/kinds/0/version"}},
		{"config.kinds[0].group=networking.istio.io,config.kinds[0].version=v1,config.kinds[0].kind=gateway,config.kinds[0].resource=gateways", []string{"/config/kinds/0/kind", "gateway"}},
		{"config.kinds[0].group=networking.istio.io,config.kinds[0].version=v1,config.kinds[0].kind=Gateway,config.kinds[0].resource=gateways,config.kinds[0].namespaced=true", []string{"/config/kinds/0", "'namespaced' not allowed"}},
		{"config.kinds=null", []string{"/config", "missing property 'kinds'"}},
		{"replica=3", []string{"'replica' not allowed"}},
		// Checks the schema cannot express, done by the templates.
		{"shutdown.terminationGracePeriodSeconds=20", []string{"shutdown.terminationGracePeriodSeconds (20) must exceed"}},
		{"podDisruptionBudget.maxUnavailable=1", []string{"podDisruptionBudget: set minAvailable or maxUnavailable, not both"}},
		{"metrics.serviceMonitor.enabled=true", []string{"metrics.serviceMonitor.enabled needs metrics.service.enabled"}},
		{
			"config.kinds[0].group=networking.istio.io,config.kinds[0].version=v1,config.kinds[0].kind=Gateway,config.kinds[0].resource=gateways," +
				"config.kinds[1].group=networking.istio.io,config.kinds[1].version=v1beta1,config.kinds[1].kind=Gateway,config.kinds[1].resource=gateways",
			[]string{"config.kinds[1]: duplicated kind Gateway in group networking.istio.io"},
		},
		{
			"config.kinds[0].group=apps,config.kinds[0].version=v1,config.kinds[0].kind=Deployment,config.kinds[0].resource=deployments",
			[]string{"config.kinds[0]: Deployment (group apps) is a workload kind", "config.workloads.enabled"},
		},
	} {
		t.Run(c.set, func(t *testing.T) {
			r := env.helmRun("template", "eg", env.chart, "--namespace", renderNamespace, "--set", c.set)
			if r.Err == nil {
				t.Fatalf("helm template accepted --set %s:\n%s", c.set, r)
			}
			for _, w := range c.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("helm template refused --set %s, but its message lacks %q:\n%s", c.set, w, r)
				}
			}
		})
	}
}
