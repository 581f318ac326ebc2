package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pmezard/go-difflib/difflib"
	yamlv2 "go.yaml.in/yaml/v2"
	jsonpatch "gomodules.xyz/jsonpatch/v2"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/object"
)

// Result is the outcome for one object.
type Result struct {
	Source    string `json:"-"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Allowed   bool   `json:"allowed"`
	Mutated   bool   `json:"mutated"`
	Skipped   string `json:"skipped,omitempty"`
	// Error says why the object could not be evaluated (an internal error);
	// such an object is not allowed.
	Error string                `json:"error,omitempty"`
	Patch []jsonpatch.Operation `json:"patch"`
	// DryRunPatch is the would-be patch of the dry-run mutations, on top of
	// Patch: recorded, not applied.
	DryRunPatch []jsonpatch.Operation `json:"dryRunPatch,omitempty"`
	Violations  []engine.Violation    `json:"violations"`
	// Warnings are shown to the user by the API server (kubectl prints them).
	Warnings []string `json:"warnings,omitempty"`
	// Object is the object as the API server would store it.
	Object json.RawMessage `json:"object"`
	// Original is the object as read, and WouldBe the object with
	// DryRunPatch applied too, for diffs.
	Original json.RawMessage `json:"-"`
	WouldBe  json.RawMessage `json:"-"`
}

// Report is what `check -o json` prints.
type Report struct {
	Results []Result `json:"results"`
}

// Denied reports whether any object was denied.
func (r *Report) Denied() bool {
	for _, res := range r.Results {
		if !res.Allowed && res.Error == "" {
			return true
		}
	}
	return false
}

// Errors counts the objects that could not be evaluated.
func (r *Report) Errors() int {
	n := 0
	for _, res := range r.Results {
		if res.Error != "" {
			n++
		}
	}
	return n
}

// Inventory collects the ServiceEntries among docs, and the cluster model
// of them (Model): the files are the whole world the offline check knows.
func Inventory(docs []Document, cfg *config.Config) (engine.Inventory, error) {
	inv := engine.Inventory{ServiceEntries: []engine.ServiceEntryRef{}}
	model, err := Model(docs, cfg)
	if err != nil {
		return inv, err
	}
	inv.Model = model
	for _, d := range docs {
		if d.GVK.Group != object.Group || d.GVK.Kind != object.ServiceEntry {
			continue
		}
		var se struct {
			Spec struct {
				Hosts    []string `json:"hosts"`
				Location string   `json:"location"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(d.JSON, &se); err != nil {
			return inv, fmt.Errorf("%s: ServiceEntry %s/%s: %w", d.Source, d.Namespace, d.Name, err)
		}
		inv.ServiceEntries = append(inv.ServiceEntries, engine.ServiceEntryRef{
			Namespace: d.Namespace, Name: d.Name, Hosts: se.Spec.Hosts, Location: se.Spec.Location,
		})
	}
	return inv, nil
}

// Model is the cluster model of docs (data.inventory.objects and byHost):
// their objects of the model's kinds (config.ModelKinds), those of the kinds
// it keeps for the gateway's namespace alone (AuthorizationPolicies,
// Secrets) only there. A Secret's values are not kept. The model is
// partial: a kind none of docs has is unknown to the rules, not empty.
func Model(docs []Document, cfg *config.Config) (*engine.Model, error) {
	kinds := map[string]*engine.ModelKind{}
	model := &engine.Model{Partial: true}
	for _, d := range docs {
		mk, ok := config.ModelKindOf(d.GVK.Group, d.GVK.Kind)
		if !ok || (mk.GatewayNamespace && d.Namespace != cfg.Gateway.Namespace) {
			continue
		}
		o, err := engine.NewModelObject(mk.Kind, d.JSON)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %s/%s: %w", d.Source, d.GVK.Kind, d.Namespace, d.Name, err)
		}
		k := kinds[mk.Kind]
		if k == nil {
			k = &engine.ModelKind{Kind: mk.Kind}
			kinds[mk.Kind] = k
			model.Kinds = append(model.Kinds, k)
		}
		k.Objects = append(k.Objects, o)
	}
	return model, nil
}

// VirtualServicesByHost indexes the VirtualServices of docs by the hosts in
// their spec.hosts, for the rules that look at routes from elsewhere
// (engine.Inventory.VirtualServicesByHost); documents of other kinds are
// left out.
func VirtualServicesByHost(docs []Document) (map[string][]json.RawMessage, error) {
	out := map[string][]json.RawMessage{}
	for _, d := range docs {
		if d.GVK.Group != object.Group || d.GVK.Kind != object.VirtualService {
			continue
		}
		var vs struct {
			Spec struct {
				Hosts []string `json:"hosts"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(d.JSON, &vs); err != nil {
			return nil, fmt.Errorf("%s: VirtualService %s/%s: %w", d.Source, d.Namespace, d.Name, err)
		}
		for _, h := range vs.Spec.Hosts {
			out[h] = append(out[h], d.JSON)
		}
	}
	return out, nil
}

// Run reviews each document with both phases, as the API server calls the
// mutating and then the validating webhook on its creation, and renders the
// outcomes. An object that cannot be decoded is an input error. A panic in the work for one object is that object's
// Error, and the others are checked on.
func Run(ctx context.Context, e guard.Engine, docs []Document) (*Report, error) {
	rep := &Report{Results: make([]Result, 0, len(docs))}
	for _, d := range docs {
		res, err := checkOne(ctx, e, d)
		var pe *guard.PanicError
		if errors.As(err, &pe) {
			res = Result{
				Source: d.Source, Kind: d.GVK.Kind, Namespace: d.Namespace, Name: d.Name,
				Patch: []jsonpatch.Operation{}, Violations: []engine.Violation{},
				Object: d.JSON, Original: d.JSON, WouldBe: d.JSON,
				Error: fmt.Sprintf("%s: %v", object.ID(d.GVK.Kind, d.Namespace, d.Name), pe),
			}
		} else if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// WhereCheck labels a panic in check's own part of the work on an object.
const WhereCheck = "check"

func checkOne(ctx context.Context, e guard.Engine, d Document) (res Result, err error) {
	defer guard.Contain(WhereCheck, &err)
	res = Result{
		Source: d.Source, Kind: d.GVK.Kind, Namespace: d.Namespace, Name: d.Name,
		Allowed: true, Patch: []jsonpatch.Operation{}, Violations: []engine.Violation{},
		Object: d.JSON, Original: d.JSON, WouldBe: d.JSON,
	}
	req := engine.Request{
		Operation: "CREATE", Group: d.GVK.Group, Version: d.GVK.Version, Kind: d.GVK.Kind,
		Namespace: d.Namespace, Name: d.Name, Object: d.JSON,
	}
	o, err := guard.Review(ctx, e, req, guard.Options{Strict: true})
	if err != nil {
		return res, wrap(d, err)
	}
	res.Skipped, res.Allowed, res.Warnings = o.Skipped, o.Allowed, o.Warnings
	if len(o.Patch) > 0 {
		res.Mutated, res.Patch = true, o.Patch
	}
	res.DryRunPatch, res.Object, res.WouldBe = o.WouldBePatch, o.Object, o.WouldBe
	if o.Violations != nil {
		res.Violations = o.Violations
	}
	return res, nil
}

func wrap(d Document, err error) error {
	var ie *guard.InputError
	if errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", d.Source, err)
	}
	return fmt.Errorf("%s: %s %s/%s: %w", d.Source, d.GVK.Kind, d.Namespace, d.Name, err)
}

// YAMLDiff is the unified diff, shown as YAML, of two JSON documents.
func YAMLDiff(before, after []byte, fromTitle, toTitle string) (string, error) {
	beforeYAML, err := toYAML(before)
	if err != nil {
		return "", err
	}
	afterYAML, err := toYAML(after)
	if err != nil {
		return "", err
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(beforeYAML)), B: difflib.SplitLines(string(afterYAML)),
		FromFile: fromTitle, ToFile: toTitle, Context: 3,
	})
}

// toYAML shows a JSON document as YAML, keys sorted. It decodes the JSON
// with encoding/json (sigs.k8s.io/yaml's JSONToYAML parses it as YAML, several
// times slower) and keeps integers integers.
func toYAML(js []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return yamlv2.Marshal(yamlValue(doc))
}

// yamlValue turns json.Numbers into int64 or float64, which YAML writes as
// numbers (a json.Number would be a quoted string).
func yamlValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = yamlValue(e)
		}
	case []any:
		for i, e := range x {
			x[i] = yamlValue(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
