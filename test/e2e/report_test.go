//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/egress-guard/egress-guard/webhook/audit"
	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

// chromium is the headless browser the report is rendered in: $CHROMIUM, or
// Debian's chromium on the PATH (make tools installs it).
func chromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CHROMIUM")
	if bin == "" {
		bin = "chromium"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("no headless browser: %v (run `make tools`, which installs Debian's chromium, or set CHROMIUM)", err)
	}
	return path
}

// runChromium renders url headless with extra flags and returns stdout.
func runChromium(t *testing.T, bin, url string, flags ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, flags, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestHTMLReportInBrowser renders the HTML audit report of scenario 000's
// files in headless Chromium and checks the rendered DOM: the totals, the
// per-namespace rule counts and a finding; it saves a screenshot.
func TestHTMLReportInBrowser(t *testing.T) {
	bin := chromium(t)
	ctx := context.Background()
	dir := filepath.Join(scenariosDir(), "000-http-mtls-origination")
	cfg, err := config.LoadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Overrides = []config.Override{{Rules: []string{"EGR102"}, Action: config.ActionWarn}}
	docs, err := check.ReadPaths([]string{filepath.Join(dir, "compliant.yaml"), filepath.Join(dir, "mutate.yaml"), filepath.Join(dir, "rejected.yaml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(ctx, engine.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	a, err := audit.Run(ctx, e, docs, audit.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := audit.Summarize(a)
	if sum.Fail == 0 || sum.Warn == 0 || sum.Compliant == 0 {
		t.Fatalf("the audit should have failing, warning and compliant objects: %+v", sum)
	}
	page := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.Write(f, audit.FormatHTML, a); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	url := "file://" + page

	doc, err := html.Parse(bytes.NewReader(runChromium(t, bin, url, "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"objects": sum.Objects, "compliant": sum.Compliant, "with-findings": sum.WithFindings, "fail": sum.Fail, "warn": sum.Warn} {
		box := find(doc, func(n *html.Node) bool { return attr(n, "data-total") == name })
		if len(box) != 1 {
			t.Errorf("total %s: %d elements", name, len(box))
			continue
		}
		num := find(box[0], func(n *html.Node) bool { return attr(n, "class") == "n" })
		if len(num) != 1 || text(num[0]) != strconv.Itoa(want) {
			t.Errorf("total %s shows %q, want %d", name, text(box[0]), want)
		}
	}
	for _, ns := range sum.Namespaces {
		for _, rc := range ns.Rules {
			row := find(doc, func(n *html.Node) bool {
				return n.Data == "tr" && attr(n, "data-namespace") == ns.Namespace && attr(n, "data-rule") == rc.Code
			})
			if len(row) != 1 {
				t.Errorf("summary row %s %s: %d rows", ns.Namespace, rc.Code, len(row))
				continue
			}
			for kind, want := range map[string]int{"fail": rc.Fail, "warn": rc.Warn} {
				cell := find(row[0], func(n *html.Node) bool { return attr(n, "data-count") == kind })
				if len(cell) != 1 || text(cell[0]) != strconv.Itoa(want) {
					t.Errorf("summary %s %s %s: %v, want %d", ns.Namespace, rc.Code, kind, texts(cell), want)
				}
			}
		}
	}
	findings := 0
	for _, r := range a.Results {
		findings += len(r.Findings)
	}
	rows := find(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "class") == "finding" })
	if len(rows) != findings {
		t.Errorf("%d finding rows rendered, the audit has %d findings", len(rows), findings)
	}
	// A finding: the ServiceEntry for a host nobody allowed.
	section := find(doc, func(n *html.Node) bool {
		return n.Data == "section" && strings.HasPrefix(attr(n, "data-object"), "ServiceEntry default/")
	})
	found := false
	for _, s := range section {
		for _, row := range find(s, func(n *html.Node) bool { return attr(n, "data-rule") == "EGR101" }) {
			found = found || (attr(row, "data-result") == "fail" && strings.Contains(text(row), `spec.hosts[0]: external host "httpbin.org" is not allowed for namespace "default"`))
		}
	}
	if !found {
		t.Error("the EGR101 finding for httpbin.org is not in the rendered page")
	}
	if diff := find(doc, func(n *html.Node) bool { return attr(n, "class") == "add" }); len(diff) == 0 {
		t.Error("no added line of a would-be change is rendered")
	}

	shots := filepath.Join(env.Root, "test", "e2e", "artifacts")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(shots, "audit-report.png")
	_ = os.Remove(shot)
	runChromium(t, bin, url, "--screenshot="+shot, "--window-size=1280,2400", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, len(png))
	}
	t.Logf("screenshot of the rendered report: %s (%d bytes)", shot, len(png))
}

// find returns the nodes under n (n included) for which match holds.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is the node's text content, trimmed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

func texts(ns []*html.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, text(n))
	}
	return out
}
