package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

const scenarios = "../../test/scenarios"

func scenarioDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(scenarios, "0*"))
	if err != nil || len(dirs) < 5 {
		t.Fatalf("scenario directories: %v %v", dirs, err)
	}
	return dirs
}

func loadConfig(t *testing.T, path string, edit func(*config.Config)) *engine.Engine {
	t.Helper()
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	e, err := engine.New(context.Background(), engine.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readDocs(t *testing.T, dir string) []check.Document {
	t.Helper()
	var paths []string
	for _, name := range []string{"compliant.yaml", "mutate.yaml", "rejected.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	docs, err := check.ReadPaths(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// An audit in dry run holds exactly what an enforcing check of the same
// files denies or patches, each finding labelled with today's action.
func TestAuditMatchesEnforcingCheck(t *testing.T) {
	ctx := context.Background()
	for _, dir := range scenarioDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			docs := readDocs(t, dir)
			enforcing := loadConfig(t, filepath.Join(dir, "config.yaml"), nil)
			inv, err := check.Inventory(docs, enforcing.Config())
			if err != nil {
				t.Fatal(err)
			}
			if enforcing.Config().Enforcement != config.ActionDeny {
				t.Fatalf("the scenario config enforces %s", enforcing.Config().Enforcement)
			}
			cfg := *enforcing.Config()
			cfg.Enforcement = config.ActionDryRun
			dry, err := engine.New(ctx, engine.Options{Config: &cfg, Inventory: inv})
			if err != nil {
				t.Fatal(err)
			}
			enforcingInv, err := engine.New(ctx, engine.Options{Config: enforcing.Config(), Inventory: inv})
			if err != nil {
				t.Fatal(err)
			}
			want, err := check.Run(ctx, enforcingInv, docs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Run(ctx, dry, docs, Options{Strict: true, Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Results) != len(want.Results) {
				t.Fatalf("%d results, want %d", len(got.Results), len(want.Results))
			}
			findings := 0
			for i, w := range want.Results {
				g := got.Results[i]
				id := fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name)
				if g.Object.Kind != w.Kind || g.Object.Name != w.Name || g.Skipped != w.Skipped {
					t.Fatalf("result %d is %+v, want %s (skipped %q)", i, g.Object, id, w.Skipped)
				}
				var wantViolations, gotViolations []string
				for _, v := range w.Violations {
					wantViolations = append(wantViolations, v.Code+" "+v.Field)
				}
				mutations := 0
				for _, f := range g.Findings {
					findings++
					if f.Action != config.ActionDryRun || f.Outcome != Fail {
						t.Errorf("%s: finding %s is %s/%s, want dryrun/fail", id, f.Code, f.Action, f.Outcome)
					}
					switch f.Type {
					case TypeViolation:
						gotViolations = append(gotViolations, f.Code+" "+f.Field)
					case TypeMutation:
						mutations++
					}
				}
				slices.Sort(wantViolations)
				slices.Sort(gotViolations)
				if !slices.Equal(gotViolations, wantViolations) {
					t.Errorf("%s: violations %v, enforcing check denies %v", id, gotViolations, wantViolations)
				}
				if (mutations > 0) != w.Mutated || !reflect.DeepEqual(jsonOf(t, g.Patch), jsonOf(t, w.Patch)) {
					t.Errorf("%s: %d mutation findings with patch %s; enforcing check patches %s", id, mutations, jsonOf(t, g.Patch), jsonOf(t, w.Patch))
				}
				if w.Mutated && !strings.Contains(g.Diff, "+++ after enforcement") {
					t.Errorf("%s: no readable diff: %q", id, g.Diff)
				}
			}
			if findings == 0 {
				t.Error("the scenario's rejected and mutate files gave no finding")
			}
		})
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Len() == 0 {
		return "[]"
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReportsPerNamespace(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(scenarios, "000-http-mtls-origination")
	e := loadConfig(t, filepath.Join(dir, "config.yaml"), func(c *config.Config) {
		c.Overrides = []config.Override{{Rules: []string{"EGR101"}, Action: config.ActionWarn}}
	})
	docs := readDocs(t, dir)
	// One more namespace, exempt: left out of the reports.
	exempt, err := check.NewDocument("extra:1", []byte(`{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"x","namespace":"kube-system"},"spec":{"hosts":["evil.example"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, exempt)
	a, err := Run(ctx, e, docs, Options{Strict: true, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	reps := Reports(a)
	if len(reps) != 1 || reps[0].Namespace != "default" || reps[0].Name != ReportName || reps[0].Kind != "Report" || reps[0].APIVersion != "openreports.io/v1alpha1" {
		t.Fatalf("reports: %+v", reps)
	}
	rep := reps[0]
	s := Summarize(a)
	if last := a.Results[len(a.Results)-1]; last.Skipped != "namespace exempt" {
		t.Errorf("the kube-system object: %+v", last)
	}
	if rep.Summary.Fail != s.Fail || rep.Summary.Warn != s.Warn || rep.Summary.Pass != s.Compliant || s.Fail == 0 {
		t.Errorf("report summary %+v, audit summary %+v", rep.Summary, s)
	}
	var warned, patched, passed bool
	for _, r := range rep.Results {
		if len(r.Subjects) != 1 || r.Subjects[0].Name == "" || r.Subjects[0].Kind == "" || r.Source != Source || r.Timestamp.Seconds != 1_800_000_000 {
			t.Errorf("result without its resource, source or time: %+v", r)
		}
		switch {
		case r.Policy == "EGR101":
			warned = r.Result == "warn" && r.Properties["action"] == "warn" && r.Properties["field"] != ""
		case r.Properties["type"] == TypeMutation:
			patched = r.Result == "fail" && strings.Contains(r.Properties["patch"], `"op":`) && r.Rule == r.Properties["intent"]
		case r.Policy == PassPolicy:
			passed = r.Result == "pass"
		}
	}
	if !warned || !patched || !passed {
		t.Errorf("want an EGR101 warning with its field (%v), a mutation with its patch (%v) and a pass (%v): %+v", warned, patched, passed, rep.Results)
	}
}

func TestWriteFormats(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(scenarios, "000-http-mtls-origination")
	a, err := Run(ctx, loadConfig(t, filepath.Join(dir, "config.yaml"), nil), readDocs(t, dir), Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"r.json", []string{`"summary"`, `"code": "EGR201"`, `"diff"`}},
		{"r.md", []string{"# egress-guard audit", "## Namespace default", "```diff", "**EGR101** fail"}},
		{"r.html", []string{"<!DOCTYPE html>", `data-rule="EGR101"`, `<span class="add">`, "Would-be change"}},
	} {
		f, err := FormatOf(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := Write(&b, f, a); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s lacks %q", tc.path, w)
			}
		}
		if f == FormatHTML && (strings.Contains(b.String(), "http://") || strings.Contains(b.String(), "https://") || strings.Contains(b.String(), "<script src")) {
			t.Errorf("the HTML report loads something from elsewhere")
		}
	}
	if _, err := FormatOf("report.pdf"); err == nil {
		t.Error("a .pdf report is not an error")
	}
}

// The chart ships the OpenReports CRD of the API version egress-guard writes.
func TestChartReportCRDMatchesModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/openreports/reports-api").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/openreports/reports-api: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "openreports.io_reports.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "charts", "egress-guard", "files", "crds", "openreports.io_reports.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("charts/egress-guard/files/crds/openreports.io_reports.yaml differs from the reports-api module's CRD: copy it again")
	}
}

// A diff's text is escaped in the HTML report.
func TestDiffHTMLEscapes(t *testing.T) {
	got := string(diffHTML("--- a\n+++ b\n@@ -1 +1 @@\n-x: <script>\n+x: \"&\"\n ctx\n"))
	want := `<span class="head">--- a</span><span class="head">+++ b</span><span class="hunk">@@ -1 +1 @@</span>` +
		`<span class="del">-x: &lt;script&gt;</span><span class="add">+x: &#34;&amp;&#34;</span><span class="ctx"> ctx</span>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// An object that does not decode is an error result naming the field; the
// others are audited.
func TestAuditErrorResult(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(scenarios, "000-http-mtls-origination")
	docs := readDocs(t, dir)
	bad, err := check.NewDocument("extra:1", []byte(`{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"bad","namespace":"default"},"spec":{"hosts":["test.com"],"ports":[{"number":"eighty","name":"http","protocol":"HTTP"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, bad)
	a, err := Run(ctx, loadConfig(t, filepath.Join(dir, "config.yaml"), nil), docs, Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	last := a.Results[len(a.Results)-1]
	if !strings.Contains(last.Error, "ServiceEntry default/bad") || !strings.Contains(last.Error, "spec.ports[0].number") || len(last.Findings) != 0 {
		t.Errorf("the undecodable object: %+v", last)
	}
	s := Summarize(a)
	if s.Errors != 1 || s.WithFindings == 0 {
		t.Errorf("summary %+v", s)
	}
	reps := Reports(a)
	var found bool
	for _, r := range reps[0].Results {
		if r.Result == "error" && len(r.Subjects) == 1 && r.Subjects[0].Name == "bad" && strings.Contains(r.Description, "spec.ports[0].number") {
			found = true
		}
	}
	if !found || reps[0].Summary.Error != 1 {
		t.Errorf("no error result for the undecodable object: %+v", reps[0].Summary)
	}
	var html bytes.Buffer
	if err := Write(&html, FormatHTML, a); err != nil || !strings.Contains(html.String(), `data-error>could not be evaluated: `) {
		t.Errorf("the HTML report does not show the error: %v", err)
	}
}
