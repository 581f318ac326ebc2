package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A policy calling a restricted built-in does not load: the error names the
// file, the line and the built-in, and the last good engine stays in force
// until the configuration allows the built-in.
func TestHolderRefusesRestrictedBuiltins(t *testing.T) {
	w := watch(t)
	first := w.Get()
	policy := "package egressguard.rules.custom\n\ndeny contains {\"code\": \"EGR901\", \"message\": r.body} if {\n\tr := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"})\n}\n"
	w.policies.update(map[string]string{"custom.rego": policy})
	eventually(t, "a failed reload", func() bool { _, f := w.reloads(t); return f >= 1 })
	if w.Get() != first {
		t.Fatal("a policy calling http.send replaced the engine")
	}
	err := w.Load(context.Background())
	if err == nil {
		t.Fatal("a policy calling http.send loaded")
	}
	for _, want := range []string{"custom.rego:4", "http.send"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %q: %v", want, err)
		}
	}
	if w.Get() != first {
		t.Fatal("a failed load replaced the engine")
	}

	allowing := fmt.Sprintf(goodConfig, "deny") + "policies:\n  allowedBuiltins: [http.send]\n  allowedHosts: [127.0.0.1]\n"
	w.config.update(map[string]string{"config.yaml": allowing})
	eventually(t, "the reload with http.send allowed", func() bool { return w.Get() != first })
	if got := w.Get().Config().Policies.AllowedBuiltins; len(got) != 1 || got[0] != "http.send" {
		t.Fatalf("allowed built-ins in force: %v", got)
	}
}
