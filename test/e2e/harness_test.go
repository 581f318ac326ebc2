//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/test/harness"
)

const (
	// webhookConfigName names both webhook configurations the tests register.
	webhookConfigName = "egress-guard-e2e"

	// probeNamespace holds the object used to check which webhook URL the
	// API server calls.
	probeNamespace = "e2e-probe"
)

// cluster is the control plane shared by every test, with the webhook
// certificates and configurations.
type cluster struct {
	*harness.ControlPlane
	certs    *harness.Certs
	webhooks *harness.Webhooks
	guardBin string
}

// env is set up once by TestMain.
var env *cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	c, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		return 1
	}
	env = c
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		}
	}()
	return m.Run()
}

// setup starts the control plane with Istio's CRDs and registers the
// webhooks. When it fails, it stops whatever it started.
func setup() (c *cluster, err error) {
	guardBin := os.Getenv("EGRESS_GUARD_BIN")
	if guardBin == "" {
		return nil, errors.New("EGRESS_GUARD_BIN is not set: it must name the egress-guard binary (run `make e2e`, or `make build` and set EGRESS_GUARD_BIN=$PWD/bin/egress-guard)")
	}
	if guardBin, err = harness.CheckGuardBinary(guardBin); err != nil {
		return nil, fmt.Errorf("EGRESS_GUARD_BIN: %w", err)
	}
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
		}
	}()
	c = &cluster{ControlPlane: cp, guardBin: guardBin}
	if c.certs, err = harness.WriteServingCerts(filepath.Join(cp.Dir, "certs")); err != nil {
		return nil, fmt.Errorf("serving certificates: %w", err)
	}
	if c.webhooks, err = harness.InstallWebhooks(context.Background(), cp, webhookConfigName, probeNamespace, c.certs.CAPEM); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *cluster) ensureNamespace(t *testing.T, name string) {
	t.Helper()
	if _, err := c.EnsureNamespace(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// startGuard starts `egress-guard serve` with config (and policies, when not
// empty), waits for /readyz, and stops the process when t ends.
// More serve arguments follow the others.
func (c *cluster) startGuard(t *testing.T, config, policies string, args ...string) *harness.Guard {
	t.Helper()
	return launchGuard(t, harness.GuardOptions{
		Bin:        c.guardBin,
		Certs:      c.certs,
		Config:     config,
		Policies:   policies,
		Kubeconfig: c.Kubeconfig,
		Args:       args,
	})
}

// launchGuard starts `egress-guard serve` as opts say (its log in a
// temporary directory unless LogPath is set), and stops it when t ends,
// showing its output when t failed.
func launchGuard(t *testing.T, opts harness.GuardOptions) *harness.Guard {
	t.Helper()
	if opts.LogPath == "" {
		opts.LogPath = filepath.Join(t.TempDir(), "egress-guard.log")
	}
	g, err := harness.StartGuard(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", g, g.Logs(200))
		}
	})
	return g
}

// useGuard points both webhooks at g and waits until the API server calls it.
func (c *cluster) useGuard(t *testing.T, g *harness.Guard) {
	t.Helper()
	if err := c.webhooks.Point(context.Background(), g.URL()); err != nil {
		t.Fatalf("%v; egress-guard output:\n%s", err, g.Logs(100))
	}
}

// kubectl runs kubectl against the test cluster.
func (c *cluster) kubectl(args ...string) harness.Result {
	return c.Kubectl(context.Background(), nil, args...)
}

// getObject reads back the object a document describes. found is false when
// the API server answers NotFound.
func (c *cluster) getObject(t *testing.T, d *harness.Doc) (obj map[string]any, found bool) {
	t.Helper()
	r := c.kubectl("get", "-f", d.Path, "-o", "json")
	if r.Err != nil {
		if r.NotFound() {
			return nil, false
		}
		t.Fatalf("reading back %s:\n%s", d, r)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &obj); err != nil {
		t.Fatalf("reading back %s: decoding kubectl output: %v\n%s", d, err, r)
	}
	return obj, true
}

// deleteDocs deletes the objects of the given documents, ignoring missing ones.
//
// The ServiceEntries go first: while one registers an external host, the
// deletion of the route taking the host through the gateway is refused
// (EGR204), as it would be for any user.
func (c *cluster) deleteDocs(t *testing.T, docs []*harness.Doc) {
	t.Helper()
	for _, d := range harness.ServiceEntriesFirst(docs) {
		if r := c.kubectl("delete", "-f", d.Path, "--ignore-not-found", "--wait=true", "--timeout=30s"); r.Err != nil {
			t.Errorf("deleting %s:\n%s", d, r)
		}
	}
}

// testName is a subtest name for the document.
func testName(d *harness.Doc) string {
	return d.Obj.GetKind() + "_" + d.Obj.GetNamespace() + "_" + d.Obj.GetName()
}

// derive copies d with its namespace and name changed and writes it under out.
func derive(d *harness.Doc, out, namespace, name string) (*harness.Doc, error) {
	obj := d.Obj.DeepCopy()
	obj.SetNamespace(namespace)
	obj.SetName(name)
	return harness.NewDoc(out, d.File, d.Index, obj)
}

func indent(s string) string { return harness.Indent(s, "    ") }

func prettyJSON(v any) string {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

// diffJSON lists the differences between want and got (canonical JSON), one
// line per differing field.
func diffJSON(want, got any) []string {
	var out []string
	diffAt("spec", want, got, &out)
	return out
}

func diffAt(path string, want, got any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !gok:
				*out = append(*out, fmt.Sprintf("%s.%s: missing, want %s", path, k, compact(wv)))
			case !wok:
				*out = append(*out, fmt.Sprintf("%s.%s: unexpected %s", path, k, compact(gv)))
			default:
				diffAt(path+"."+k, wv, gv, out)
			}
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		for i := range w {
			diffAt(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], out)
		}
		return
	}
	if !reflect.DeepEqual(want, got) {
		*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, compact(want), compact(got)))
	}
}

func compact(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

// checkSpec fails t when the object's spec is not want.
func checkSpec(t *testing.T, what string, want any, obj map[string]any) {
	t.Helper()
	got := harness.Canonical(obj["spec"])
	if reflect.DeepEqual(want, got) {
		return
	}
	t.Errorf("%s: .spec differs from the expected .spec:\n%s\nexpected .spec:\n%s\nactual .spec:\n%s",
		what, indent(strings.Join(diffJSON(want, got), "\n")), indent(prettyJSON(want)), indent(prettyJSON(got)))
}

// fileWriter returns a function that writes a file under a temporary
// directory of t (subdirectories made as needed) and returns its path.
func fileWriter(t *testing.T) func(name, content string) string {
	dir := t.TempDir()
	return func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// bindClusterAdmin makes subject ("group" or "user") name a cluster admin
// while t runs, so that kubectl --as/--as-group acts as it (the webhook, not
// RBAC, is under test).
func (c *cluster) bindClusterAdmin(t *testing.T, subject, name string) {
	t.Helper()
	binding := "egress-guard-e2e-" + subject + "-" + strings.ReplaceAll(name, ":", "-")
	if r := c.kubectl("create", "clusterrolebinding", binding, "--clusterrole=cluster-admin", "--"+subject+"="+name); r.Err != nil {
		t.Fatalf("binding %s %s:\n%s", subject, name, r)
	}
	t.Cleanup(func() { c.kubectl("delete", "clusterrolebinding", binding) })
}
