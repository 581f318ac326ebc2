package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
)

// ExpectCodesAnnotation lists the rule codes a rejected.yaml object must be
// refused with, comma separated.
const ExpectCodesAnnotation = "test.egressguard.io/expect-codes"

// Scenario is one directory of test/scenarios:
//
//	config.yaml            the configuration serve runs with
//	compliant.yaml         objects stored unchanged
//	mutate.yaml            objects stored as in mutate-expected.yaml
//	mutate-expected.yaml   matched to mutate.yaml by kind and name
//	rejected.yaml          objects refused with their expect-codes
//	policies/              passed to serve --policies when present
//
// Every file but config.yaml is optional.
type Scenario struct {
	Name      string // directory name, e.g. 000-http-mtls-origination
	Dir       string
	Config    string   // path of config.yaml
	Summary   string   // the leading comment of config.yaml, one line
	Policies  string   // empty when the scenario has no policies/ directory
	Exempt    []string // config.exemptNamespaces, defaulted as serve does
	Compliant []*Doc
	Mutate    []*Doc
	Expected  []*Doc
	Rejected  []*Doc
}

// ScenarioDirs lists the scenario directories under root, in name order.
func ScenarioDirs(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading the scenarios: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no scenario directories in %s", root)
	}
	return dirs, nil
}

// LoadScenario reads the scenario in dir and writes each of its objects to
// a file of its own under out, which it creates when needed.
func LoadScenario(dir, out string) (*Scenario, error) {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, err
	}
	s := &Scenario{Name: filepath.Base(dir), Dir: dir, Config: filepath.Join(dir, "config.yaml")}
	data, err := os.ReadFile(s.Config)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: config.yaml: %w", s.Name, err)
	}
	s.Exempt = cfg.ExemptNamespaces // defaulted as serve defaults it
	s.Summary = leadingComment(data)
	if fi, err := os.Stat(filepath.Join(dir, "policies")); err == nil && fi.IsDir() {
		s.Policies = filepath.Join(dir, "policies")
	}
	for _, f := range []struct {
		name string
		docs *[]*Doc
	}{
		{"compliant.yaml", &s.Compliant},
		{"mutate.yaml", &s.Mutate},
		{"mutate-expected.yaml", &s.Expected},
		{"rejected.yaml", &s.Rejected},
	} {
		if *f.docs, err = LoadDocs(dir, f.name, out); err != nil {
			return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
		}
	}
	return s, nil
}

// leadingComment joins the comment lines at the top of a YAML file,
// without "# " and without the "Scenario NNN:" prefix.
func leadingComment(data []byte) string {
	var parts []string
	for _, line := range strings.Split(string(data), "\n") {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !ok {
			break
		}
		parts = append(parts, strings.TrimSpace(text))
	}
	s := strings.Join(parts, " ")
	if rest, ok := strings.CutPrefix(s, "Scenario "); ok {
		if _, after, found := strings.Cut(rest, ": "); found {
			s = after
		}
	}
	return s
}

// Namespaces are the namespaces of every object in the scenario, sorted.
func (s *Scenario) Namespaces() []string {
	set := map[string]bool{}
	for _, docs := range [][]*Doc{s.Compliant, s.Mutate, s.Expected, s.Rejected} {
		for _, d := range docs {
			set[d.Obj.GetNamespace()] = true
		}
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// ExpectedFor returns the mutate-expected.yaml document with the same kind
// and name as d, preferring the same namespace; nil when there is none.
func (s *Scenario) ExpectedFor(d *Doc) *Doc {
	var match *Doc
	for _, e := range s.Expected {
		if e.Obj.GetKind() != d.Obj.GetKind() || e.Obj.GetName() != d.Obj.GetName() {
			continue
		}
		if e.Obj.GetNamespace() == d.Obj.GetNamespace() {
			return e
		}
		if match == nil {
			match = e
		}
	}
	return match
}

// Doc is one object of a scenario file.
type Doc struct {
	File  string // scenario file it came from, e.g. mutate.yaml
	Index int    // position in the file
	Obj   *unstructured.Unstructured
	Raw   []byte // the document, as JSON
	Path  string // a file holding only this document, for kubectl -f
}

// NewDoc writes obj under out as a document of its own; file and index say
// where it came from.
func NewDoc(out, file string, index int, obj *unstructured.Unstructured) (*Doc, error) {
	js, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	d := &Doc{File: file, Index: index, Obj: obj, Raw: js}
	d.Path = filepath.Join(out, fmt.Sprintf("%s-%02d-%s-%s-%s.json", strings.TrimSuffix(file, ".yaml"), index+1,
		strings.ToLower(obj.GetKind()), obj.GetNamespace(), obj.GetName()))
	return d, os.WriteFile(d.Path, js, 0o600)
}

// String names the object and where it came from.
func (d *Doc) String() string {
	return fmt.Sprintf("%s %s/%s (%s document %d)", d.Obj.GetKind(), d.Obj.GetNamespace(), d.Obj.GetName(), d.File, d.Index+1)
}

// Ref is "Kind namespace/name".
func (d *Doc) Ref() string {
	return d.Obj.GetKind() + " " + d.Obj.GetNamespace() + "/" + d.Obj.GetName()
}

// Spec is the document's .spec in canonical JSON form.
func (d *Doc) Spec() any { return Canonical(d.Obj.Object["spec"]) }

// ExpectCodes returns the codes listed in the expect-codes annotation.
func (d *Doc) ExpectCodes() []string {
	var codes []string
	for _, c := range strings.Split(d.Obj.GetAnnotations()[ExpectCodesAnnotation], ",") {
		if c = strings.TrimSpace(c); c != "" {
			codes = append(codes, c)
		}
	}
	return codes
}

// LoadDocs reads the multi-document YAML file dir/name with the same reader
// as `egress-guard check`, and writes each document to its own file under
// out. A missing file yields no documents.
func LoadDocs(dir, name, out string) ([]*Doc, error) {
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	read, err := check.ReadPaths([]string{path}, nil)
	if err != nil {
		return nil, err
	}
	docs := make([]*Doc, 0, len(read))
	for i, r := range read {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(r.JSON); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Source, err)
		}
		d := &Doc{File: name, Index: i, Obj: obj, Raw: r.JSON}
		d.Path = filepath.Join(out, fmt.Sprintf("%s-%02d-%s-%s.json", strings.TrimSuffix(name, ".yaml"), i+1, strings.ToLower(obj.GetKind()), obj.GetName()))
		if err := os.WriteFile(d.Path, r.JSON, 0o600); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// Canonical returns v as generic JSON values (maps, slices, float64, ...),
// so that reflect.DeepEqual compares what JSON would.
func Canonical(v any) any {
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}
