package policies_test

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/egress-guard/egress-guard/policies"
	"github.com/egress-guard/egress-guard/webhook/config"
)

// regoFiles returns the contents of every .rego file in the embedded pack,
// test files included, keyed by path.
func regoFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") {
			return err
		}
		src, err := fs.ReadFile(policies.FS, path)
		if err != nil {
			return err
		}
		files[path] = src
		return nil
	})
	if err != nil {
		t.Fatalf("reading embedded policies: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("no .rego files embedded")
	}
	return files
}

// TestRego runs the pack's Rego tests (the _test.rego files beside each rule)
// as one subtest each.
func TestRego(t *testing.T) {
	modules := map[string]*ast.Module{}
	for path, src := range regoFiles(t) {
		m, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
		modules[path] = m
	}

	ctx := t.Context()
	store := inmem.New()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Abort(ctx, txn)

	ch, err := tester.NewRunner().SetStore(store).SetModules(modules).RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("compiling policies: %v", err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	if len(results) == 0 {
		t.Fatal("no Rego tests ran")
	}
	slices.SortFunc(results, func(a, b *tester.Result) int {
		return strings.Compare(a.Package+"."+a.Name, b.Package+"."+b.Name)
	})

	for _, r := range results {
		t.Run(strings.TrimPrefix(r.Package, "data.")+"."+r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s: error: %v", r.Location, r.Error)
			case r.Fail:
				if r.FailedAt != nil {
					t.Errorf("%s: failed at %s: %s", r.Location, r.FailedAt.Location, r.FailedAt)
				} else {
					t.Errorf("%s: failed", r.Location)
				}
			case r.Skip:
				t.Errorf("%s: skipped; the pack keeps no todo tests", r.Location)
			}
		})
	}
}

// TestRegoFormatted checks that every .rego file is as `opa fmt` writes it.
func TestRegoFormatted(t *testing.T) {
	for path, src := range regoFiles(t) {
		got, err := format.Source(path, src)
		if err != nil {
			t.Errorf("formatting %s: %v", path, err)
			continue
		}
		if !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted; run opa fmt -w policies/", path)
		}
	}
}

// The pack's workload kinds (lib.workload_kinds, for egressguard.main and the
// workload rules) are the configuration's (config.WorkloadKinds, for serve,
// check and the audit).
func TestWorkloadKindsAgree(t *testing.T) {
	var opts []func(*rego.Rego)
	for path, src := range regoFiles(t) {
		if !strings.HasSuffix(path, "_test.rego") {
			opts = append(opts, rego.Module(path, string(src)))
		}
	}
	rs, err := rego.New(append(opts, rego.Query("data.egressguard.lib.workload_kinds"))...).Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("evaluating lib.workload_kinds: %v %v", rs, err)
	}
	got, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("lib.workload_kinds is %T", rs[0].Expressions[0].Value)
	}
	want := map[string]any{}
	for _, k := range config.WorkloadKinds {
		want[k.Kind] = k.Group
	}
	if !maps.Equal(got, want) {
		t.Errorf("lib.workload_kinds %v, config.WorkloadKinds %v", got, want)
	}
}
