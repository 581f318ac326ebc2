package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"

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

// TestAllowedHTTPSend runs an allowed http.send under both evaluators: it
// reaches the hosts the configuration names, no other, and stops at the
// evaluation's deadline.
func TestAllowedHTTPSend(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		fmt.Fprint(w, `{"team": "payments"}`)
	}))
	defer srv.Close()
	defer close(release)
	u, _ := url.Parse(srv.URL)
	dir := platformPolicy(t, `package egressguard.rules.remote

deny contains {"code": "PLT900", "message": sprintf("owner %s", [resp.body.team]), "field": "metadata"} if {
	resp := http.send({"method": "GET", "url": concat("", [input.object.metadata.annotations.url, input.object.metadata.annotations.path])})
}
`)
	for _, ev := range Evaluators {
		t.Run(ev, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Policies.AllowedBuiltins = []string{"http.send"}
			cfg.Policies.AllowedHosts = []string{u.Hostname()}
			e, err := New(context.Background(), Options{Config: cfg, PolicyDirs: []string{dir}, Evaluator: ev})
			if err != nil {
				t.Fatal(err)
			}
			review := func(base, path string) *Prepared {
				in, err := e.Input(request("DestinationRule", fmt.Sprintf(`{"metadata":{"name":"d","annotations":{"url":%q,"path":%q}},"spec":{"host":"reviews"}}`, base, path)))
				if err != nil {
					t.Fatal(err)
				}
				return in
			}
			vs, err := e.Violations(context.Background(), review(srv.URL, "/team"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(vs, func(v Violation) bool { return v.Code == "PLT900" && v.Message == "owner payments" }) {
				t.Fatalf("http.send's answer is not in the violations: %+v", vs)
			}

			// A host the configuration does not name: OPA's allow_net refuses it.
			other := strings.Replace(srv.URL, u.Hostname(), "localhost", 1)
			vs, err = e.Violations(context.Background(), review(other, "/team"))
			if err == nil && slices.ContainsFunc(vs, func(v Violation) bool { return v.Code == "PLT900" }) {
				t.Fatalf("http.send reached a host not allowed: %+v", vs)
			}

			// The deadline stops a call that hangs.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			vs, err = e.Violations(ctx, review(srv.URL, "/slow"))
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("the evaluation ran %v past a 300ms deadline", took)
			}
			if slices.ContainsFunc(vs, func(v Violation) bool { return v.Code == "PLT900" }) {
				t.Fatalf("a call cut by the deadline gave an answer: %+v", vs)
			}
			_ = err // http.send's own errors are undefined unless raise_error; the deadline ends it either way
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

// TestNondeterministicBuiltins: rand.*, uuid.* and time.now_ns run under
// both evaluators, as in topdown: one time per evaluation, a random
// number in range.
func TestNondeterministicBuiltins(t *testing.T) {
	dir := platformPolicy(t, `package egressguard.rules.chance

deny contains {"code": "PLT200", "message": sprintf("%d %d %v %v", [n, count(id), t1 == t2, t1 > 0]), "field": "metadata"} if {
	n := rand.intn(input.object.metadata.name, 10)
	id := uuid.rfc4122(input.object.metadata.name)
	t1 := time.now_ns()
	t2 := time.now_ns()
}
`)
	for _, ev := range Evaluators {
		e, err := New(context.Background(), Options{Config: testConfig(t), PolicyDirs: []string{dir}, Evaluator: ev})
		if err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		in, _ := e.Input(request("DestinationRule", `{"metadata":{"name":"d"},"spec":{"host":"reviews"}}`))
		vs, err := e.Violations(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		i := slices.IndexFunc(vs, func(v Violation) bool { return v.Code == "PLT200" })
		if i < 0 {
			t.Fatalf("%s: no PLT200 in %+v", ev, vs)
		}
		var n, idLen int
		var same, positive bool
		if _, err := fmt.Sscanf(vs[i].Message, "%d %d %t %t", &n, &idLen, &same, &positive); err != nil {
			t.Fatalf("%s: %q: %v", ev, vs[i].Message, err)
		}
		if n < 0 || n >= 10 || idLen != 36 || !same || !positive {
			t.Fatalf("%s: %q", ev, vs[i].Message)
		}
	}
}

func TestTopdownCancelIsAnError(t *testing.T) {
	// The deadline reaches built-ins: numbers.range over request data.
	dir := platformPolicy(t, `package egressguard.rules.slow

deny contains {"code": "PLT300", "message": "big", "field": "metadata"} if {
	count(numbers.range(1, to_number(input.object.metadata.annotations.n))) > 1
}
`)
	for _, ev := range Evaluators {
		e, err := New(context.Background(), Options{Config: testConfig(t), PolicyDirs: []string{dir}, Evaluator: ev})
		if err != nil {
			t.Fatal(err)
		}
		in, _ := e.Input(request("DestinationRule", `{"metadata":{"name":"d","annotations":{"n":"2000000000"}},"spec":{"host":"reviews"}}`))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err = e.Violations(ctx, in)
		cancel()
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("%s: ran %v past a 200ms deadline", ev, took)
		}
		var te *topdown.Error
		if !errors.As(err, &te) || te.Code != topdown.CancelErr {
			t.Fatalf("%s: want topdown's cancel error, got %v", ev, err)
		}
	}
}
