package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/check"
)

const scenario = "../../../test/scenarios/000-http-mtls-origination/"

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckExitCodes(t *testing.T) {
	cfg := scenario + "config.yaml"
	if code, out, stderr := run(t, "", "check", "-f", scenario+"compliant.yaml", "--config", cfg); code != ExitOK {
		t.Errorf("compliant: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, _ := run(t, "", "check", "-f", scenario+"mutate.yaml", "--config", cfg); code != ExitOK || !strings.Contains(out, "mutated  VirtualService default/test-com-direct") || !strings.Contains(out, "+        host: istio-egressgateway.istio-system.svc.cluster.local") {
		t.Errorf("mutate: exit %d, want a mutated line and a diff:\n%s", code, out)
	}
	code, out, _ := run(t, "", "check", "-f", scenario+"rejected.yaml", "--config", cfg)
	if code != ExitDenied || !strings.Contains(out, `EGR101 deny   spec.hosts[0]: external host "httpbin.org"`) {
		t.Errorf("rejected: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"check"},
		{"check", "-f", "does-not-exist.yaml"},
		{"check", "-f", scenario + "compliant.yaml", "-o", "xml"},
		{"check", "-f", scenario + "compliant.yaml", "--config", scenario + "compliant.yaml"},
		{"check", "--no-such-flag"},
	} {
		if code, _, stderr := run(t, "", args...); code != ExitUsage || stderr == "" {
			t.Errorf("%v: exit %d (want %d) stderr %q", args, code, ExitUsage, stderr)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	code, out, stderr := run(t, "", "check", "-f", scenario, "--config", scenario+"config.yaml", "-o", "json", "-f", "-")
	_ = stderr
	// The scenario directory holds config.yaml, which is no manifest.
	if code != ExitUsage {
		t.Fatalf("a directory with a non-manifest: exit %d", code)
	}
	code, out, stderr = run(t, "", "check", "-f", scenario+"mutate.yaml", "-f", scenario+"rejected.yaml", "--config", scenario+"config.yaml", "-o", "json")
	if code != ExitDenied {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Results []struct {
			Kind, Namespace, Name string
			Allowed, Mutated      bool
			Patch                 []map[string]any
			Violations            []struct{ Code, Message, Field, Action string }
			Object                map[string]any
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(rep.Results) != 15 {
		t.Fatalf("want 15 results, got %d", len(rep.Results))
	}
	vs := rep.Results[0]
	if vs.Kind != "VirtualService" || !vs.Allowed || !vs.Mutated || len(vs.Patch) == 0 || vs.Object["spec"] == nil {
		t.Errorf("mutated VirtualService: %+v", vs)
	}
	se := rep.Results[3]
	if se.Allowed || len(se.Violations) != 1 || se.Violations[0].Code != "EGR101" || se.Violations[0].Field != "spec.hosts[0]" || se.Violations[0].Action != "deny" {
		t.Errorf("denied ServiceEntry: %+v", se)
	}
	elsewhere := rep.Results[5]
	if elsewhere.Name != "test-com-elsewhere" || elsewhere.Allowed || len(elsewhere.Violations) != 1 || elsewhere.Violations[0].Code != "EGR103" || elsewhere.Violations[0].Field != "spec.endpoints[0].address" {
		t.Errorf("denied ServiceEntry pointing an allowed host elsewhere: %+v", elsewhere)
	}
	mirrored := rep.Results[8]
	if mirrored.Name != "test-com-mirrored" || mirrored.Allowed || len(mirrored.Violations) != 1 || mirrored.Violations[0].Code != "EGR203" || mirrored.Violations[0].Field != "spec.http[0].mirror.host" {
		t.Errorf("denied mirroring VirtualService: %+v", mirrored)
	}
	subset := rep.Results[9]
	if subset.Name != "test-com-weak-subset" || subset.Allowed || subset.Mutated || len(subset.Violations) != 1 || subset.Violations[0].Field != "spec.subsets[0].trafficPolicy.tls.mode" {
		t.Errorf("denied DestinationRule with a weak subset: %+v", subset)
	}
	// The bypasses: an external host called internal, a TCP port matching
	// any address, addresses matching every destination or wider than
	// allowed; platform-only settings (a Sidecar letting anything out, an
	// EnvoyFilter), JSON kinds that check reads too.
	for i, want := range []struct{ name, fields string }{
		{"test-com-internal", "spec.location"},
		{"test-com-any-ip", "spec.ports[0]"},
		{"test-com-every-address", "spec.addresses[0] spec.addresses[1]"},
		{"anything-goes", "spec.outboundTrafficPolicy.mode"},
		{"direct-cluster", "spec"},
	} {
		r := rep.Results[10+i]
		var fields []string
		for _, v := range r.Violations {
			fields = append(fields, v.Field)
		}
		if r.Name != want.name || r.Allowed || strings.Join(fields, " ") != want.fields {
			t.Errorf("denied bypass %s: %+v", want.name, r)
		}
	}
}

func TestCheckStdinAndPlatformPolicies(t *testing.T) {
	dir := t.TempDir()
	policy := `package egressguard.rules.platform

deny contains {"code": "PLT001", "field": "metadata.labels.team", "message": "metadata.labels.team: every object names its team"} if {
	not input.object.metadata.labels.team
}
`
	if err := os.WriteFile(filepath.Join(dir, "team.rego"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	manifest := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec: {host: reviews}\n"
	code, out, stderr := run(t, manifest, "check", "-f", "-", "--policies", dir)
	if code != ExitDenied || !strings.Contains(out, "PLT001") {
		t.Errorf("platform rule: exit %d\n%s%s", code, out, stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package egressguard.rules.broken\n\ndeny contains x if {\n\tx := \n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, manifest, "check", "-f", "-", "--policies", dir)
	if code != ExitUsage || !strings.Contains(stderr, "broken.rego:") {
		t.Errorf("a compile error names file and line: exit %d %s", code, stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package elsewhere\n\nx := 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, manifest, "check", "-f", "-", "--policies", dir)
	if code != ExitUsage || !strings.Contains(stderr, "broken.rego:1: package elsewhere must be under egressguard.rules") {
		t.Errorf("a module outside egressguard.rules: exit %d %s", code, stderr)
	}
}

// check -f reads the cluster model from its files: a platform rule that
// looks a Gateway up in data.inventory.objects finds the one given beside
// the VirtualService, and only the gateway namespace's Secrets are there.
func TestCheckReadsTheModelFromItsFiles(t *testing.T) {
	dir := t.TempDir()
	policy := `package egressguard.rules.topology

deny contains {"code": "PLT010", "field": "spec.gateways", "message": sprintf("spec.gateways: no Gateway %s", [key])} if {
	input.kind.kind == "VirtualService"
	some name in input.object.spec.gateways
	name != "mesh"
	key := _key(name)
	not data.inventory.objects.Gateway[key]
}

deny contains {"code": "PLT011", "field": "metadata", "message": sprintf("metadata: Secrets %v", [object.keys(data.inventory.objects.Secret)])} if {
	input.kind.kind == "VirtualService"
}

_key(name) := name if contains(name, "/")

else := concat("/", [input.namespace, name])
`
	if err := os.WriteFile(filepath.Join(dir, "topology.rego"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	vs := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: default}\nspec: {hosts: [reviews], gateways: [istio-system/ingress, mesh], http: [{route: [{destination: {host: reviews}}]}]}\n"
	gateway := "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: ingress, namespace: istio-system}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*/*']}]}\n"
	secrets := "---\napiVersion: v1\nkind: Secret\nmetadata: {name: test.client, namespace: istio-system}\ndata: {tls.crt: eA==}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: elsewhere, namespace: default}\ndata: {tls.crt: eA==}\n"
	_, out, stderr := run(t, vs+secrets, "check", "-f", "-", "--policies", dir)
	if !strings.Contains(out, "PLT010") || !strings.Contains(out, "no Gateway istio-system/ingress") {
		t.Errorf("without the Gateway: want PLT010\n%s%s", out, stderr)
	}
	_, out, stderr = run(t, vs+gateway+secrets, "check", "-f", "-", "--policies", dir)
	if strings.Contains(out, "PLT010") {
		t.Errorf("with the Gateway: PLT010\n%s%s", out, stderr)
	}
	if !strings.Contains(out, `Secrets {"istio-system/test.client"}`) {
		t.Errorf("the gateway namespace's Secrets alone: want PLT011 naming istio-system/test.client\n%s%s", out, stderr)
	}
}

func TestCheckRejectsUndecodableObjects(t *testing.T) {
	for name, tc := range map[string]struct{ manifest, want string }{
		"unknown field": {"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec: {hosts: [a.com], resolutionz: DNS}\n",
			"ServiceEntry default/s"},
		"wrong type": {"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec: {hosts: [a.com], ports: [{number: eighty, name: http, protocol: HTTP}]}\n",
			"ServiceEntry default/s"},
		"a Pod's wrong type": {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: app, image: app, securityContext: {runAsUser: '1337'}}]}\n",
			"Pod shop/p: spec.containers.securityContext.runAsUser: expected int64, got string"},
		"a Deployment's unknown field": {"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: shop}\nspec: {template: {spec: {hostNetwerk: true, containers: [{name: app, image: app}]}}}\n",
			"Deployment shop/d: spec.template.spec.hostNetwerk: unknown field"},
	} {
		code, _, stderr := run(t, tc.manifest, "check", "-f", "-")
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d stderr %q, want %q", name, code, stderr, tc.want)
		}
		t.Logf("%s: %s", name, stderr)
	}
}

// A rule in dry run for a namespace: its mutation is only shown as a would-be
// change, and its violation does not deny.
func TestCheckDryRunOverride(t *testing.T) {
	base, err := os.ReadFile(scenario + "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	doc := string(base) + "overrides:\n- rules: [EGR201]\n  namespaces: [default]\n  action: dryrun\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, "", "check", "-f", scenario+"mutate.yaml", "--config", cfg, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	var rep struct {
		Results []struct {
			Kind, Name  string
			Mutated     bool
			Patch       []map[string]any
			DryRunPatch []map[string]any
			Violations  []struct{ Code, Action string }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rep.Results {
		// test-com-plain-leg is fixed by EGR606, which the override
		// does not name.
		if r.Kind != "VirtualService" || r.Name == "test-com-plain-leg" {
			continue
		}
		found = true
		if r.Mutated || len(r.Patch) != 0 || len(r.DryRunPatch) == 0 {
			t.Errorf("%s: mutated %v, patch %v, dryRunPatch %v: want only a dry-run patch", r.Name, r.Mutated, r.Patch, r.DryRunPatch)
		}
		if len(r.Violations) != 1 || r.Violations[0].Code != "EGR201" || r.Violations[0].Action != "dryrun" {
			t.Errorf("%s: violations %+v, want EGR201 dryrun", r.Name, r.Violations)
		}
	}
	if !found {
		t.Fatal("no VirtualService in the results")
	}
	_, out, _ = run(t, "", "check", "-f", scenario+"mutate.yaml", "--config", cfg)
	if !strings.Contains(out, "+++ would be mutated (dry run)") || !strings.Contains(out, "EGR201 dryrun") {
		t.Errorf("text output lacks the would-be diff or the dry-run violation:\n%s", out)
	}
}

// An object that could not be evaluated is reported on its own line with
// the error, without a stack, and counted in the summary.
func TestCheckTextReportsErrors(t *testing.T) {
	rep := &check.Report{Results: []check.Result{
		{Source: "a.yaml:1", Kind: "VirtualService", Namespace: "default", Name: "x", Error: "VirtualService default/x: internal error: boom"},
		{Source: "a.yaml:2", Kind: "ServiceEntry", Namespace: "default", Name: "y", Allowed: true},
	}}
	var out bytes.Buffer
	if err := writeText(&out, rep); err != nil {
		t.Fatal(err)
	}
	want := "ERROR    VirtualService default/x  [a.yaml:1]\n" +
		"    error: VirtualService default/x: internal error: boom\n" +
		"allowed  ServiceEntry default/y  [a.yaml:2]\n" +
		"2 objects: 1 allowed (0 mutated), 0 denied, 1 could not be evaluated\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if rep.Denied() || rep.Errors() != 1 {
		t.Errorf("Denied %v, Errors %d: an error is no denial", rep.Denied(), rep.Errors())
	}
}
