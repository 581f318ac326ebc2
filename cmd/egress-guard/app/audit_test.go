package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuditFiles(t *testing.T) {
	dir := t.TempDir()
	html, md := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.md")
	code, out, stderr := run(t, "", "audit", "-f", scenario+"mutate.yaml", "-f", scenario+"rejected.yaml", "--config", scenario+"config.yaml",
		"--report", html, "--report", md)
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	for _, want := range []string{"that enforcement would deny or change", "fail EGR101 ServiceEntry default/", "wrote " + html} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	for path, want := range map[string]string{html: `<pre class="diff">`, md: "```diff"} {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %v, lacks %q", path, err, want)
		}
	}

	code, out, stderr = run(t, "", "audit", "-f", scenario+"rejected.yaml", "--config", scenario+"config.yaml", "-o", "json")
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var a struct {
		Results []struct {
			Findings []struct{ Code, Result, Action string }
		}
		Summary struct{ Objects, WithFindings, Fail int }
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if a.Summary.Objects == 0 || a.Summary.WithFindings == 0 || a.Summary.Fail == 0 || len(a.Results) != a.Summary.Objects {
		t.Errorf("summary %+v over %d results", a.Summary, len(a.Results))
	}

	for _, args := range [][]string{
		{"audit", "-f", scenario + "rejected.yaml", "--report", filepath.Join(dir, "r.pdf")},
		{"audit", "-f", scenario + "rejected.yaml", "--report-api", "kyverno"},
		{"audit", "-f", scenario + "rejected.yaml", "-n", "default"},
		{"audit", "-f", scenario + "rejected.yaml", "-o", "yaml"},
		{"audit", "-f", "does-not-exist.yaml"},
	} {
		if code, _, stderr := run(t, "", args...); code != ExitUsage || stderr == "" {
			t.Errorf("%v: exit %d (want %d), stderr %q", args, code, ExitUsage, stderr)
		}
	}
}
