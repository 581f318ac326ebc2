// Package scenarios holds the five seed scenarios as manifests, each with the
// configuration that makes it so: compliant.yaml (accepted unchanged),
// mutate.yaml (fixed into mutate-expected.yaml) and rejected.yaml (each object
// annotated with the rule codes that reject it). This test runs them through
// the offline engine, mutate.yaml and rejected.yaml in the world of
// compliant.yaml (the platform's setup); test/e2e applies the same files to
// a real API server.
package scenarios

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/test/harness"
	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

var update = flag.Bool("update", false, "rewrite mutate-expected.yaml from the engine's output")

// ExpectCodes is the annotation naming the rule codes that reject an object.
const ExpectCodes = harness.ExpectCodesAnnotation

func TestScenarios(t *testing.T) {
	dirs, err := filepath.Glob("[0-9][0-9][0-9]-*")
	if err != nil || len(dirs) != 5 {
		t.Fatalf("want the five scenario directories, got %v (%v)", dirs, err)
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			cfg, err := config.LoadFile(filepath.Join(dir, "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			t.Run("compliant", func(t *testing.T) {
				for _, r := range run(t, cfg, dir, "compliant.yaml") {
					if !r.Allowed || len(r.Patch) > 0 || len(r.Violations) > 0 {
						t.Errorf("%s %s/%s: want allowed unchanged, got allowed=%v patch=%v violations=%v", r.Kind, r.Namespace, r.Name, r.Allowed, r.Patch, r.Violations)
					}
				}
			})
			t.Run("mutate", func(t *testing.T) {
				results := run(t, cfg, dir, "mutate.yaml")
				got := []byte("# mutate.yaml as the API server stores it; go test ./test/scenarios -update rewrites this file.\n")
				for _, r := range results {
					if !r.Allowed || !r.Mutated || len(r.Violations) > 0 {
						t.Errorf("%s %s/%s: want allowed and mutated, got allowed=%v mutated=%v violations=%v", r.Kind, r.Namespace, r.Name, r.Allowed, r.Mutated, r.Violations)
					}
					y, err := yaml.JSONToYAML(r.Object)
					if err != nil {
						t.Fatal(err)
					}
					got = append(append(got, "---\n"...), y...)
				}
				expectedPath := filepath.Join(dir, "mutate-expected.yaml")
				if *update {
					if err := os.WriteFile(expectedPath, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want := objects(t, expectedPath)
				if len(want) != len(results) {
					t.Fatalf("mutate-expected.yaml has %d objects, mutate.yaml gave %d", len(want), len(results))
				}
				for i, r := range results {
					var obj any
					if err := json.Unmarshal(r.Object, &obj); err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(obj, want[i]) {
						t.Errorf("%s %s/%s: mutated object differs from mutate-expected.yaml\n got: %s", r.Kind, r.Namespace, r.Name, r.Object)
					}
				}
				// Idempotent: the mutated objects need nothing more.
				for _, r := range run(t, cfg, dir, "mutate-expected.yaml") {
					if !r.Allowed || len(r.Patch) > 0 {
						t.Errorf("%s %s/%s: a second pass changed it: allowed=%v patch=%v", r.Kind, r.Namespace, r.Name, r.Allowed, r.Patch)
					}
				}
			})
			t.Run("rejected", func(t *testing.T) {
				results := run(t, cfg, dir, "rejected.yaml")
				if len(results) == 0 {
					t.Fatal("no rejected objects")
				}
				for _, r := range results {
					want := expectedCodes(t, r.Object)
					if len(want) == 0 {
						t.Fatalf("%s %s/%s has no %s annotation", r.Kind, r.Namespace, r.Name, ExpectCodes)
					}
					var got []string
					for _, v := range r.Violations {
						if !slices.Contains(got, v.Code) {
							got = append(got, v.Code)
						}
					}
					slices.Sort(got)
					if r.Allowed || !slices.Equal(got, want) {
						t.Errorf("%s %s/%s: want denied with %v, got allowed=%v codes=%v", r.Kind, r.Namespace, r.Name, want, r.Allowed, got)
					}
				}
			})
		})
	}
}

// TestEvaluatorsAgree: every scenario file gives the same report with the IR
// evaluator (the default) as with OPA's topdown interpreter.
func TestEvaluatorsAgree(t *testing.T) {
	files, err := filepath.Glob("[0-9][0-9][0-9]-*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		dir, file := filepath.Split(f)
		if file == "config.yaml" {
			continue
		}
		n++
		t.Run(f, func(t *testing.T) {
			cfg, err := config.LoadFile(filepath.Join(dir, "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			ir := runWith(t, cfg, dir, file, engine.EvaluatorIR)
			td := runWith(t, cfg, dir, file, engine.EvaluatorTopdown)
			if !reflect.DeepEqual(ir, td) {
				t.Errorf("the evaluators disagree\n ir:      %+v\n topdown: %+v", ir, td)
			}
		})
	}
	if n < 20 {
		t.Fatalf("compared %d scenario files", n)
	}
}

func run(t *testing.T, cfg *config.Config, dir, file string) []check.Result {
	t.Helper()
	return runWith(t, cfg, dir, file, "")
}

func runWith(t *testing.T, cfg *config.Config, dir, file, evaluator string) []check.Result {
	t.Helper()
	docs, err := check.ReadPaths([]string{filepath.Join(dir, file)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The world the objects are checked in: a scenario's compliant.yaml is
	// the platform's setup (its ServiceEntries, Gateways, DestinationRules),
	// present in the cluster when the other files' objects are applied.
	world := docs
	if file != "compliant.yaml" {
		setup, err := check.ReadPaths([]string{filepath.Join(dir, "compliant.yaml")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		world = append(setup, docs...)
	}
	inv, err := check.Inventory(world, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(context.Background(), engine.Options{Config: cfg, Inventory: inv, Evaluator: evaluator})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := check.Run(context.Background(), e, docs)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Results
}

func objects(t *testing.T, path string) []any {
	t.Helper()
	docs, err := check.ReadPaths([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]any, 0, len(docs))
	for _, d := range docs {
		var obj any
		if err := json.Unmarshal(d.JSON, &obj); err != nil {
			t.Fatal(err)
		}
		out = append(out, obj)
	}
	return out
}

func expectedCodes(t *testing.T, raw []byte) []string {
	t.Helper()
	var obj struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, c := range strings.Split(obj.Metadata.Annotations[ExpectCodes], ",") {
		if c = strings.TrimSpace(c); c != "" {
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)
	return codes
}
