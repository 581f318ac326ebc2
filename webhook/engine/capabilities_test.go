package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// platformPolicy writes one policy file into a fresh directory.
func platformPolicy(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "platform.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRestrictedBuiltinsDoNotLoad(t *testing.T) {
	calls := map[string]string{
		"http.send":          `http.send({"method": "GET", "url": "http://example.com"})`,
		"net.lookup_ip_addr": `net.lookup_ip_addr("example.com")`,
		"opa.runtime":        `opa.runtime()`,
		"json.verify_schema": `json.verify_schema({"$ref": "file:///etc/hostname"})`,
		"json.match_schema":  `json.match_schema({}, {"$ref": "file:///etc/hostname"})`,
	}
	if len(calls) != len(config.RestrictedBuiltins) {
		t.Fatalf("a call for each restricted built-in: %d calls, %d built-ins", len(calls), len(config.RestrictedBuiltins))
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			dir := platformPolicy(t, fmt.Sprintf("package egressguard.rules.reach\n\ndeny contains x if {\n\tx := %s\n}\n", call))
			_, err := New(context.Background(), Options{Config: testConfig(t), PolicyDirs: []string{dir}})
			if err == nil {
				t.Fatalf("a policy calling %s loaded", name)
			}
			for _, want := range []string{"platform.rego:4", name} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not name %q: %v", want, err)
				}
			}
			// Allowed by the configuration, it loads.
			cfg := testConfig(t)
			cfg.Policies.AllowedBuiltins = []string{name}
			if _, err := New(context.Background(), Options{Config: cfg, PolicyDirs: []string{dir}}); err != nil {
				t.Fatalf("allowed, %s does not load: %v", name, err)
			}
		})
	}
}

func TestPoliciesConfigValidation(t *testing.T) {
	cfg := testConfig(t)
	cfg.Policies = config.Policies{AllowedBuiltins: []string{"http.send", "http.sned", "http.send"}}
	errs := config.Validate(cfg)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`policies.allowedBuiltins[1]: Unsupported value: "http.sned"`,
		`policies.allowedBuiltins[2]: Duplicate value: "http.send"`,
		`policies.allowedHosts: Required value: http.send is allowed: list the hosts it may reach`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no error %q in:\n%s", want, all)
		}
	}
}

// TestUnplannableQueryFallsBack: a rule that iterates a package of rules
// loads and gives topdown's answer, whichever evaluator can run it.
func TestPackageIterationLoads(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"tables.rego": `package egressguard.rules.tables

a := 1

b contains "x" if true

f(x) := x + 1

c := {"k": 1}
`,
		"iterate.rego": `package egressguard.rules.iterate

deny contains {"code": "PLT100", "message": sprintf("table %s", [k]), "field": "metadata"} if {
	some k, _ in data.egressguard.rules.tables
}
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]string
	for _, ev := range Evaluators {
		e, err := New(context.Background(), Options{Config: testConfig(t), PolicyDirs: []string{dir}, Evaluator: ev})
		if err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		for _, f := range e.Fallbacks() {
			if strings.Contains(f, "g0.") {
				t.Errorf("a fallback reason names the plan's internals: %s", f)
			}
		}
		in, _ := e.Input(request("DestinationRule", `{"metadata":{"name":"d"},"spec":{"host":"reviews"}}`))
		vs, err := e.Violations(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		var msgs []string
		for _, v := range vs {
			if v.Code == "PLT100" {
				msgs = append(msgs, v.Message)
			}
		}
		got = append(got, msgs)
	}
	want := []string{"table a", "table b", "table c"}
	for i, msgs := range got {
		slices.Sort(msgs)
		if !slices.Equal(msgs, want) {
			t.Errorf("%s: %q, want %q", Evaluators[i], msgs, want)
		}
	}
}
