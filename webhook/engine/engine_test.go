package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

func testConfig(t testing.TB) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`
apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {gateway: istio-system/egress-gateway}
allow:
- hosts: [test.com]
  ports: [80, 443]
  origination: {mode: MUTUAL, port: 443, credentialName: test.client}
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const directVS = `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"v","namespace":"default"},
"spec":{"hosts":["test.com"],"http":[{"match":[{"port":80}],"route":[{"destination":{"host":"test.com","port":{"number":80}}}]}]}}`

func request(kind, obj string) Request {
	return Request{Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: kind, Namespace: "default", Name: "v", Object: []byte(obj)}
}

func TestIntentsAndViolations(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Options{Config: testConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	in, err := Input(request("VirtualService", directVS))
	if err != nil {
		t.Fatal(err)
	}
	intents, err := e.Intents(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(intents) != 1 || intents[0].Type != "route_via_gateway" || intents[0].GatewayPort != 80 || len(intents[0].TargetPorts) != 1 || intents[0].TargetPorts[0] != 443 {
		t.Fatalf("intents: %+v", intents)
	}
	vs, err := e.Violations(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Code != "EGR201" || vs[0].Action != config.ActionDeny || vs[0].Field != "spec.http[0].route[0].destination.host" {
		t.Fatalf("violations: %+v", vs)
	}
}

func TestPlatformPolicies(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("team.rego", `package egressguard.rules.team

deny contains {"code": "PLT001", "message": "metadata.labels.team: missing", "field": "metadata.labels.team", "action": "warn"} if {
	not input.object.metadata.labels.team
}
`)
	write("team_test.rego", "package egressguard.rules.team_test\n\nthis is not rego\n")
	// A ConfigMap mount keeps its files in ..data; the links at the top are what count.
	if err := os.MkdirAll(filepath.Join(dir, "..2026_01_01"), 0o700); err != nil {
		t.Fatal(err)
	}
	write("..2026_01_01/team.rego", "package egressguard.rules.team\n\nbroken if {")
	e, err := New(ctx, Options{Config: testConfig(t), PolicyDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := Input(request("DestinationRule", `{"metadata":{"name":"d"},"spec":{"host":"reviews"}}`))
	vs, err := e.Violations(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Code != "PLT001" || vs[0].Action != config.ActionWarn {
		t.Fatalf("platform violation with its own action: %+v", vs)
	}

	write("bad.rego", "package egressguard.rules.bad\n\ndeny contains x if {\n\tx := y\n}\n")
	if _, err := New(ctx, Options{Config: testConfig(t), PolicyDirs: []string{dir}}); err == nil || !strings.Contains(err.Error(), "bad.rego:4") {
		t.Fatalf("a compile error names file and line: %v", err)
	}
	write("bad.rego", "package egressguard.rules.bad\n\ndeny contains {\"code\": \"X1\", \"message\": \"m\", \"action\": \"explode\"} if true\n")
	e, err = New(ctx, Options{Config: testConfig(t), PolicyDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Violations(ctx, in); err == nil || !strings.Contains(err.Error(), `"explode"`) {
		t.Fatalf("an unknown action is an error: %v", err)
	}
}

func TestInputRejectsBadJSON(t *testing.T) {
	if _, err := Input(request("VirtualService", `{"spec":`)); err == nil || !strings.Contains(err.Error(), "object") {
		t.Fatalf("got %v", err)
	}
}

// BenchmarkEvaluate measures one admission's policy work: the input
// conversion, and both queries with each evaluator.
func BenchmarkEvaluate(b *testing.B) {
	ctx := context.Background()
	req := request("VirtualService", directVS)
	b.Run("input", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Input(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, ev := range Evaluators {
		b.Run(ev, func(b *testing.B) {
			e, err := New(ctx, Options{Config: testConfig(b), Evaluator: ev})
			if err != nil {
				b.Fatal(err)
			}
			in, err := Input(req)
			if err != nil {
				b.Fatal(err)
			}
			loopReview(ctx, b, e, in)
		})
	}
}

// A package named after a kind is evaluated for that kind only; others for
// every kind.
func TestDispatchByKind(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for name, src := range map[string]string{
		"se.rego":  "package egressguard.rules.serviceentry.extra\n\ndeny contains {\"code\": \"SE1\", \"message\": \"m\"} if true\n",
		"any.rego": "package egressguard.rules.everything\n\ndeny contains {\"code\": \"ANY1\", \"message\": \"m\"} if true\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(ctx, Options{Config: testConfig(t), PolicyDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	codes := func(kind, obj string) string {
		in, err := Input(request(kind, obj))
		if err != nil {
			t.Fatal(err)
		}
		vs, err := e.Violations(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vs {
			out = append(out, v.Code)
		}
		return strings.Join(out, ",")
	}
	if got := codes("ServiceEntry", `{"spec":{"hosts":["reviews"],"location":"MESH_INTERNAL"}}`); got != "ANY1,SE1" {
		t.Errorf("ServiceEntry: %s", got)
	}
	if got := codes("DestinationRule", `{"spec":{"host":"reviews"}}`); got != "ANY1" {
		t.Errorf("DestinationRule: %s", got)
	}
}

func TestInputLeavesOutManagedFields(t *testing.T) {
	in, err := Input(request("DestinationRule", `{"metadata":{"name":"d","managedFields":[{"manager":"kubectl"}],"labels":{"a":"b"}},"spec":{"host":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := in.AST().String()
	if strings.Contains(s, "managedFields") || !strings.Contains(s, `"labels": {"a": "b"}`) {
		t.Errorf("input: %s", s)
	}
}

// The values derived from the config are in data.config for every rule.
func TestDerivedConfigData(t *testing.T) {
	cfg, err := config.Parse([]byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\ngateway: {namespace: egress, service: gw}\nclusterDomain: corp.internal\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	got := storeDoc(t, e, "data.config")
	want := map[string]any{"gw.egress.svc.corp.internal": true, "gw.egress": true, "gw.egress.svc": true}
	if !reflect.DeepEqual(got["gatewayNames"], want) || got["serviceSuffix"] != ".svc.corp.internal" || got["gatewayHost"] != "gw.egress.svc.corp.internal" {
		t.Errorf("derived data: gatewayNames %v, serviceSuffix %v, gatewayHost %v", got["gatewayNames"], got["serviceSuffix"], got["gatewayHost"])
	}
}

// The config's overrides decide the action of violations and of the intents
// that fix them, per rule and namespace.
func TestOverridesSetActions(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse([]byte(`apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {gateway: istio-system/egress-gateway}
enforcement: deny
overrides:
- rules: [EGR201]
  namespaces: [team-a]
  action: dryrun
- namespaces: [team-b]
  action: warn
allow:
- hosts: [test.com]
  ports: [80, 443]
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(ctx, Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]config.Action{"team-a": config.ActionDryRun, "team-b": config.ActionWarn, "team-c": config.ActionDeny} {
		req := request("VirtualService", directVS)
		req.Namespace = ns
		in, err := Input(req)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := e.Violations(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Code != "EGR201" || vs[0].Action != want {
			t.Errorf("%s: violations %+v, want EGR201 %s", ns, vs, want)
		}
		intents, err := e.Intents(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(intents) != 1 || intents[0].Code != "EGR201" || intents[0].Action != want {
			t.Errorf("%s: intents %+v, want one for EGR201 with action %s", ns, intents, want)
		}
	}
}

// MESH_EXTERNAL ServiceEntries make their hosts external, through an index
// built once per load.
func TestInventoryIndex(t *testing.T) {
	ctx := context.Background()
	inv := Inventory{ServiceEntries: []ServiceEntryRef{
		{Namespace: "a", Name: "nas", Hosts: []string{"nas.office.local", "*.lan.office.local"}},
		{Namespace: "a", Name: "db", Hosts: []string{"db.office.local"}, Location: "MESH_INTERNAL"},
	}}
	e, err := New(ctx, Options{Config: testConfig(t), Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	got := storeDoc(t, e, "data.inventory")
	if !reflect.DeepEqual(got["externalHosts"], map[string]any{"nas.office.local": true}) || !reflect.DeepEqual(got["externalSuffixes"], []any{".lan.office.local"}) {
		t.Errorf("index: %v %v", got["externalHosts"], got["externalSuffixes"])
	}
	for host, want := range map[string]bool{"nas.office.local": true, "pc.lan.office.local": true, "db.office.local": false, "lan.office.local": false} {
		req := request("DestinationRule", `{"metadata":{"name":"d"},"spec":{"host":"`+host+`","trafficPolicy":{"tls":{"mode":"DISABLE"}}}}`)
		in, err := Input(req)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := e.Violations(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(vs) > 0; got != want {
			t.Errorf("%s external: %v (violations %+v), want %v", host, got, vs, want)
		}
	}
}

// storeDoc is the document at ref in the engine's data.
func storeDoc(t *testing.T, e *Engine, ref string) map[string]any {
	t.Helper()
	rs, err := rego.New(rego.Query(ref), rego.Store(e.data.store())).Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("%s: %v %v", ref, rs, err)
	}
	return rs[0].Expressions[0].Value.(map[string]any)
}

// The input conversion gives the value OPA's own JSON decoding gives, with
// metadata.managedFields left out at the top level only.
func TestInputMatchesOPADecoding(t *testing.T) {
	docs := []string{
		`{"metadata":{"name":"n","labels":{"a\u00e9\"b":"\u2028x\\y"}},"spec":{"hosts":["a.com"],"n":[1,-0,2.5e3,12345678901234567890,1E-2],"t":true,"f":false,"z":null,"e":{},"l":[]}}`,
		`{"spec":{"metadata":{"managedFields":[1]}},"managedFields":"top"}`,
		`[1,"x",{"k":[]}]`,
		`"just a string"`,
	}
	toValue := func(raw []byte) (ast.Value, error) {
		v, err := toValue(raw, true, false)
		if err != nil {
			return nil, err
		}
		return vm.ToAST(v), nil
	}
	for _, doc := range docs {
		got, err := toValue([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		want, err := ast.ValueFromReader(strings.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(want) != 0 {
			t.Errorf("%s:\ngot  %v\nwant %v", doc, got, want)
		}
	}
	got, err := toValue([]byte(`{"metadata":{"name":"n","managedFields":[{"manager":"m"}]},"spec":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"metadata": {"name": "n"}, "spec": {}}`; got.String() != want {
		t.Errorf("managedFields: got %v, want %s", got, want)
	}
	for _, bad := range []string{`{"n":NaN}`, `{"n":1.2.3}`, `{"n":-Inf}`, "{\"s\":\"a\tb\"}", `{"a":1,}`, `{"a":1} x`} {
		if _, err := toValue([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Evaluations share the engine's data and programs; run with -race.
func TestConcurrentEvaluation(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Options{Config: testConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				in, err := Input(request("VirtualService", directVS))
				if err != nil {
					errs <- err
					return
				}
				vs, err := e.Violations(ctx, in)
				if err == nil && (len(vs) != 1 || vs[0].Code != "EGR201") {
					err = fmt.Errorf("violations %+v", vs)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// An engine converts only the input's JSON fields its queries read; an
// engine that reads more converts a request prepared by another again.
func TestInputFieldsFollowTheQueries(t *testing.T) {
	ctx := context.Background()
	pack, err := New(ctx, Options{Config: testConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rule := "package egressguard.rules.who\n\ndeny contains {\"code\": \"WHO1\", \"message\": input.userInfo.username} if input.userInfo.username == \"mallory\"\n"
	if err := os.WriteFile(filepath.Join(dir, "who.rego"), []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	who, err := New(ctx, Options{Config: testConfig(t), PolicyDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	// ServiceEntries: the pack reads neither userInfo nor oldObject for them.
	req := request("ServiceEntry", `{"spec":{"hosts":["reviews"],"location":"MESH_INTERNAL"}}`)
	req.UserInfo = []byte(`{"username":"mallory"}`)
	in, err := pack.Input(req)
	if err != nil {
		t.Fatal(err)
	}
	if s := in.AST().String(); strings.Contains(s, "mallory") || !strings.Contains(s, "reviews") {
		t.Errorf("the pack's input: %s", s)
	}
	// The pack judges the deletion of VirtualServices (oldObject, and who
	// deletes): their input has those fields.
	vsReq := request("VirtualService", `{"spec":{"hosts":["reviews"]}}`)
	vsReq.UserInfo, vsReq.OldObject = req.UserInfo, []byte(`{"spec":{"hosts":["ratings"]}}`)
	vsIn, err := pack.Input(vsReq)
	if err != nil {
		t.Fatal(err)
	}
	if s := vsIn.AST().String(); !strings.Contains(s, "mallory") || !strings.Contains(s, "ratings") {
		t.Errorf("the pack's input of a VirtualService: %s", s)
	}
	vs, err := who.Violations(ctx, in)
	if err != nil || len(vs) != 1 || vs[0].Code != "WHO1" {
		t.Fatalf("violations %+v, %v", vs, err)
	}
	in, err = who.Input(req)
	if err != nil {
		t.Fatal(err)
	}
	if s := in.AST().String(); !strings.Contains(s, "mallory") {
		t.Errorf("input: %s", s)
	}
	// Bad JSON in a field no query reads is still an error.
	req.UserInfo = []byte(`{"username":`)
	if _, err := pack.Input(req); err == nil || !strings.Contains(err.Error(), "userInfo") {
		t.Errorf("got %v", err)
	}
}
