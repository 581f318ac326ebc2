package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	c := Default()
	if c.Enforcement != ActionDeny || len(c.Allow) != 0 {
		t.Errorf("default: enforcement %q allow %v", c.Enforcement, c.Allow)
	}
	if got := c.GatewayHost(); got != "istio-egressgateway.istio-system.svc.cluster.local" {
		t.Errorf("gateway host %q", got)
	}
	if c.Gateway.Gateway != "istio-system/istio-egressgateway" || c.Gateway.Ports.HTTP != 80 || c.Gateway.Ports.TCP != 15443 {
		t.Errorf("gateway defaults: %+v", c.Gateway)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`
apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: egress, service: gw}
allow:
- hosts: [test.com]
  origination: {mode: MUTUAL, port: 443, credentialName: test.client}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Gateway != "egress/gw" {
		t.Errorf("gateway resource default: %q", c.Gateway.Gateway)
	}
	if c.Allow[0].Origination.SNI != "test.com" {
		t.Errorf("sni default: %q", c.Allow[0].Origination.SNI)
	}
	// Istio's root namespace is policed: one object there changes the mesh.
	if strings.Join(c.ExemptNamespaces, ",") != "kube-system" {
		t.Errorf("exempt default: %v", c.ExemptNamespaces)
	}
	// The platform: the root namespace and the gateway's, cluster admins.
	if p := c.Platform; p.RootNamespace != "istio-system" || strings.Join(p.Namespaces, ",") != "istio-system,egress" || len(p.Users) != 0 || strings.Join(p.Groups, ",") != "system:masters" {
		t.Errorf("platform default: %+v", p)
	}
	c, err = Parse([]byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\nexemptNamespaces: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ExemptNamespaces) != 0 {
		t.Errorf("an explicit empty list exempts nothing, got %v", c.ExemptNamespaces)
	}
	c, err = Parse([]byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\nplatform: {rootNamespace: mesh-root, groups: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Platform; strings.Join(p.Namespaces, ",") != "mesh-root,istio-system" || len(p.Groups) != 0 {
		t.Errorf("platform with its own root namespace and no groups: %+v", p)
	}
}

func TestParseErrorsNameFieldAndValue(t *testing.T) {
	head := "apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", "allow:\n- hosts: [a.com]\n  portz: [80]\n", []string{`allow[0].portz`, "unknown field"}},
		{"duplicate field", "enforcement: deny\nenforcement: warn\n", []string{"enforcement"}},
		{"bad host", "allow:\n- hosts: [\"bad_host!\"]\n", []string{"allow[0].hosts[0]", `"bad_host!"`}},
		{"inner wildcard", "allow:\n- hosts: [\"a.*.com\"]\n", []string{"allow[0].hosts[0]", "wildcard"}},
		{"bare wildcard", "allow:\n- hosts: [\"*.com\"]\n", []string{"allow[0].hosts[0]", "top-level"}},
		{"bad port", "allow:\n- hosts: [a.com]\n  ports: [70000]\n", []string{"allow[0].ports[0]", "70000"}},
		{"negative port", "allow:\n- hosts: [a.com]\n  ports: [-1]\n", []string{"ports"}},
		{"unknown mode", "enforcement: audit\n", []string{"enforcement", `"audit"`, "deny"}},
		{"origination mode", "allow:\n- hosts: [a.com]\n  origination: {mode: ISTIO_MUTUAL, port: 443}\n", []string{"allow[0].origination.mode", "ISTIO_MUTUAL"}},
		{"mutual needs credential", "allow:\n- hosts: [a.com]\n  origination: {mode: MUTUAL, port: 443}\n", []string{"allow[0].origination.credentialName"}},
		{"origination port outside ports", "allow:\n- hosts: [a.com]\n  ports: [80]\n  origination: {mode: SIMPLE, port: 443}\n", []string{"allow[0].origination.port", "443"}},
		{"gateway ref", "gateway: {gateway: no-slash}\n", []string{"gateway.gateway", "no-slash"}},
		{"service account", "allow:\n- hosts: [a.com]\n  serviceAccounts: [sleep]\n", []string{"allow[0].serviceAccounts[0]", "sleep"}},
		{"duplicate host", "allow:\n- hosts: [a.com, a.com]\n", []string{"allow[0].hosts[1]", "Duplicate", "a.com"}},
		{"address", "allow:\n- hosts: [a.com]\n  addresses: [a.com]\n", []string{"allow[0].addresses[0]", `"a.com"`, "IP address or a CIDR"}},
		{"address zone", "allow:\n- hosts: [a.com]\n  addresses: [\"fe80::1%eth0\"]\n", []string{"allow[0].addresses[0]", "fe80::1%eth0"}},
		{"cidr host bits", "allow:\n- hosts: [a.com]\n  addresses: [203.0.113.7/24]\n", []string{"allow[0].addresses[0]", "203.0.113.7/24", "203.0.113.0/24"}},
		{"cidr length", "allow:\n- hosts: [a.com]\n  addresses: [203.0.113.0/33]\n", []string{"allow[0].addresses[0]", "203.0.113.0/33"}},
		{"duplicate address", "allow:\n- hosts: [a.com]\n  addresses: [192.0.2.1, 192.0.2.1]\n", []string{"allow[0].addresses[1]", "192.0.2.1"}},
		{"wrong kind", "kind: Other\n", []string{"kind", "Other"}},
		{"no hosts", "allow:\n- ports: [80]\n", []string{"allow[0].hosts"}},
		{"override without scope", "overrides:\n- action: warn\n", []string{"overrides[0]", "rules or namespaces"}},
		{"override action", "overrides:\n- rules: [EGR101]\n  action: audit\n", []string{"overrides[0].action", `"audit"`}},
		{"override without action", "overrides:\n- rules: [EGR101]\n", []string{"overrides[0].action"}},
		{"override rule code", "overrides:\n- rules: [egr101]\n  action: warn\n", []string{"overrides[0].rules[0]", `"egr101"`}},
		{"override duplicate rule", "overrides:\n- rules: [EGR101, EGR101]\n  action: warn\n", []string{"overrides[0].rules[1]", "EGR101"}},
		{"audit interval", "audit: {interval: 1s}\n", []string{"audit.interval", "1s"}},
		{"audit interval syntax", "audit: {interval: often}\n", []string{"audit.interval"}},
		{"audit report api", "audit: {reportAPI: kyverno}\n", []string{"audit.reportAPI", `"kyverno"`}},
		{"override namespace", "overrides:\n- namespaces: [Team_A]\n  action: dryrun\n", []string{"overrides[0].namespaces[0]", "Team_A"}},
		{"platform namespace", "platform: {namespaces: [Istio_System]}\n", []string{"platform.namespaces[0]", "Istio_System"}},
		{"platform root namespace", "platform: {rootNamespace: \"a.b\"}\n", []string{"platform.rootNamespace", `"a.b"`}},
		{"platform user", "platform: {users: [\" alice\"]}\n", []string{"platform.users[0]", "surrounding spaces"}},
		{"platform duplicate group", "platform: {groups: [admins, admins]}\n", []string{"platform.groups[1]", "Duplicate", "admins"}},
		{"platform unknown field", "platform: {admins: [a]}\n", []string{"platform.admins", "unknown field"}},
		{"no kinds", "kinds: []\n", []string{"kinds", "at least one kind"}},
		{"core kind", "kinds:\n- {group: \"\", version: v1, kind: Pod, resource: pods}\n", []string{"kinds[0].group", "core kinds"}},
		{"kind name", "kinds:\n- {group: networking.istio.io, version: v1, kind: gateway, resource: gateways}\n", []string{"kinds[0].kind", `"gateway"`}},
		{"kind version", "kinds:\n- {group: networking.istio.io, version: one, kind: Gateway, resource: gateways}\n", []string{"kinds[0].version", `"one"`}},
		{"kind resource", "kinds:\n- {group: networking.istio.io, version: v1, kind: Gateway, resource: Gateways}\n", []string{"kinds[0].resource", `"Gateways"`}},
		{"kind missing resource", "kinds:\n- {group: networking.istio.io, version: v1, kind: Gateway}\n", []string{"kinds[0].resource"}},
		{"duplicate kind", "kinds:\n- {group: networking.istio.io, version: v1, kind: Gateway, resource: gateways}\n- {group: networking.istio.io, version: v1beta1, kind: Gateway, resource: gateways}\n", []string{"kinds[1]", "Duplicate", "networking.istio.io/Gateway"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := head + tc.yaml
			if tc.name == "wrong kind" {
				doc = "apiVersion: egressguard.io/v1alpha1\n" + tc.yaml
			}
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// The policed kinds default to those the embedded rules read; a list
// replaces them, and Policed finds a kind by group and kind.
func TestKinds(t *testing.T) {
	c := Default()
	if !slices.Equal(c.Kinds, DefaultKinds) {
		t.Errorf("default kinds %+v", c.Kinds)
	}
	c, err := Parse([]byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\nkinds:\n- {group: networking.istio.io, version: v1, kind: Gateway, resource: gateways}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := c.Policed("networking.istio.io", "Gateway"); !ok || k.Resource != "gateways" {
		t.Errorf("Policed Gateway: %+v %v", k, ok)
	}
	for _, gk := range [][2]string{{"networking.istio.io", "ServiceEntry"}, {"gateway.networking.k8s.io", "Gateway"}} {
		if _, ok := c.Policed(gk[0], gk[1]); ok {
			t.Errorf("%s/%s policed with a list that does not name it", gk[0], gk[1])
		}
	}
}

func TestParseAddresses(t *testing.T) {
	c, err := Parse([]byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\nallow:\n- hosts: [a.com]\n  addresses: [192.0.2.10, 203.0.113.0/24, \"2001:db8::/32\", \"2001:db8::1\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Allow[0].Addresses, ","); got != "192.0.2.10,203.0.113.0/24,2001:db8::/32,2001:db8::1" {
		t.Errorf("addresses are kept as written: %s", got)
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\nenforcement: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v does not name %s", err, path)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file is an error")
	}
}

func TestScenarioConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("../../test/scenarios/*/config.yaml")
	if len(files) == 0 {
		t.Fatal("no scenario configs found")
	}
	for _, f := range files {
		if _, err := LoadFile(f); err != nil {
			t.Error(err)
		}
	}
}

func TestActionFor(t *testing.T) {
	c, err := Parse([]byte(`apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
enforcement: deny
overrides:
- rules: [EGR202]
  namespaces: [team-a]
  action: dryrun
- namespaces: [team-a]
  action: warn
- rules: [EGR303]
  action: dryrun
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code, ns string
		own      Action
		want     Action
	}{
		{"EGR202", "team-a", "", ActionDryRun},       // the first match wins
		{"EGR101", "team-a", "", ActionWarn},         // namespace-wide
		{"EGR303", "team-b", "", ActionDryRun},       // rule-wide
		{"EGR303", "team-a", "", ActionWarn},         // the namespace override comes first
		{"EGR101", "team-b", "", ActionDeny},         // the default
		{"PLT001", "team-b", ActionWarn, ActionWarn}, // the rule's own action
		{"PLT001", "team-a", ActionDeny, ActionWarn}, // overridden by the platform
	} {
		if got := c.ActionFor(tc.code, tc.ns, tc.own); got != tc.want {
			t.Errorf("ActionFor(%s, %s, %q) = %s, want %s", tc.code, tc.ns, tc.own, got, tc.want)
		}
	}
}

// Namespaces in the mesh, as the injector and ambient select them.
func TestMeshNamespace(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"istio-injection": "enabled"}, true},
		{map[string]string{"istio-injection": "disabled", "istio.io/rev": "1-22"}, false},
		{map[string]string{"istio.io/rev": "1-22"}, true},
		{map[string]string{"istio.io/dataplane-mode": "ambient"}, true},
		{map[string]string{"istio-injection": "disabled", "istio.io/dataplane-mode": "ambient"}, false},
		{map[string]string{"app": "x"}, false},
		{nil, false},
	} {
		if got := MeshNamespace(tc.labels); got != tc.want {
			t.Errorf("MeshNamespace(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if !IsWorkload("", "Pod") || !IsWorkload("batch", "CronJob") || IsWorkload("example.com", "Deployment") || IsWorkload("", "Service") {
		t.Error("IsWorkload")
	}
}
