package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// messages evaluates the platform rules for a DestinationRule whose
// spec.host is host and returns the messages of their violations.
func messages(ctx context.Context, t *testing.T, e *Engine, obj string) ([]string, error) {
	t.Helper()
	in, err := e.Input(request("DestinationRule", obj))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := e.Violations(ctx, in)
	var out []string
	for _, v := range vs {
		if strings.HasPrefix(v.Code, "PLT") {
			out = append(out, v.Message)
		}
	}
	return out, err
}

const plainDR = `{"metadata":{"name":"d"},"spec":{"host":"reviews"}}`

// TestAllowedHTTPSend: http.send, once allowed, works under both evaluators,
// reaches only the hosts the configuration names, and ends with the
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
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"verdict": "blocked by %s"}`, r.URL.Path)
	}))
	defer srv.Close()
	defer close(release)
	host, _, _ := net.SplitHostPort(srv.Listener.Addr().String())
	policy := func(path string) string {
		return fmt.Sprintf(`package egressguard.rules.remote

deny contains {"code": "PLT200", "message": r.body.verdict, "field": "spec.host"} if {
	r := http.send({"method": "GET", "url": "%s%s"})
	r.status_code == 200
}
`, srv.URL, path)
	}
	load := func(t *testing.T, ev, path string, hosts ...string) *Engine {
		cfg := testConfig(t)
		cfg.Policies = config.Policies{AllowedBuiltins: []string{"http.send"}, AllowedHosts: hosts}
		e, err := New(context.Background(), Options{Config: cfg, PolicyDirs: []string{platformPolicy(t, policy(path))}, Evaluator: ev})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Fallbacks()) > 0 {
			t.Fatalf("fallbacks: %v", e.Fallbacks())
		}
		return e
	}
	for _, ev := range Evaluators {
		t.Run(ev, func(t *testing.T) {
			got, err := messages(t.Context(), t, load(t, ev, "/verdict", host), plainDR)
			if err != nil || len(got) != 1 || got[0] != "blocked by /verdict" {
				t.Fatalf("allowed host: %q, %v", got, err)
			}
			// A host the configuration does not name: the call fails,
			// and, built-in errors not being strict, the rule does not
			// apply.
			got, err = messages(t.Context(), t, load(t, ev, "/verdict", "policy.example"), plainDR)
			if err != nil || len(got) != 0 {
				t.Fatalf("host not allowed: %q, %v", got, err)
			}
			// A server that does not answer: the evaluation ends with
			// its deadline, as an error, not as a rule that did not apply.
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			got, err = messages(ctx, t, load(t, ev, "/slow", host), plainDR)
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Fatalf("http.send outlived the deadline by %v", elapsed)
			}
			var te *topdown.Error
			if !errors.As(err, &te) || te.Code != topdown.CancelErr {
				t.Fatalf("slow server: want a cancellation error, got %q, %v", got, err)
			}
		})
	}
}

// TestNondeterministicBuiltins: rand.intn, uuid.rfc4122 and time.now_ns give
// one value per evaluation for the same arguments, as in topdown, and run
// under both evaluators.
func TestNondeterministicBuiltins(t *testing.T) {
	dir := platformPolicy(t, `package egressguard.rules.nd

deny contains {"code": "PLT300", "message": msg, "field": "spec.host"} if {
	a := rand.intn("k", 1000000000)
	b := rand.intn("k", 1000000000)
	u := uuid.rfc4122("k")
	v := uuid.rfc4122("k")
	t1 := time.now_ns()
	t2 := time.now_ns()
	msg := sprintf("%v %v %v %v", [a == b, u == v, t1 == t2, t1 > 0])
}
`)
	for _, ev := range Evaluators {
		t.Run(ev, func(t *testing.T) {
			e, err := New(context.Background(), Options{Config: testConfig(t), PolicyDirs: []string{dir}, Evaluator: ev})
			if err != nil {
				t.Fatal(err)
			}
			got, err := messages(t.Context(), t, e, plainDR)
			if err != nil || len(got) != 1 || got[0] != "true true true true" {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

// TestLongBuiltinsEndAtTheDeadline: built-ins that work in proportion to
// request data (numbers.range, net.cidr_expand) stop at the evaluation's
// deadline under both evaluators, with topdown's cancellation error.
func TestLongBuiltinsEndAtTheDeadline(t *testing.T) {
	dir := platformPolicy(t, `package egressguard.rules.long

deny contains {"code": "PLT400", "message": sprintf("%d", [n]), "field": "spec.host"} if {
	n := count(numbers.range(1, input.object.spec.trafficPolicy.connectionPool.tcp.maxConnections))
}

deny contains {"code": "PLT401", "message": sprintf("%d", [n]), "field": "spec.host"} if {
	n := count(net.cidr_expand(input.object.metadata.annotations.cidr))
}
`)
	objects := map[string]string{
		"numbers.range":   `{"metadata":{"name":"d"},"spec":{"host":"reviews","trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":1000000000}}}}}`,
		"net.cidr_expand": `{"metadata":{"name":"d","annotations":{"cidr":"10.0.0.0/4"}},"spec":{"host":"reviews"}}`,
	}
	for _, ev := range Evaluators {
		e, err := New(context.Background(), Options{Config: testConfig(t), PolicyDirs: []string{dir}, Evaluator: ev})
		if err != nil {
			t.Fatal(err)
		}
		for name, obj := range objects {
			t.Run(ev+"/"+name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				start := time.Now()
				got, err := messages(ctx, t, e, obj)
				if elapsed := time.Since(start); elapsed > 10*time.Second {
					t.Fatalf("%s outlived the deadline by %v", name, elapsed)
				}
				var te *topdown.Error
				if !errors.As(err, &te) || te.Code != topdown.CancelErr {
					t.Fatalf("want a cancellation error, got %q, %v", got, err)
				}
			})
		}
	}
}
