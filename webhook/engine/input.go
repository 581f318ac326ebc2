package engine

import (
	"bytes"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/valyala/fastjson"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// Request is the admission request as the policies see it (input).
type Request struct {
	Operation string
	Group     string
	Version   string
	Kind      string
	Namespace string
	Name      string
	DryRun    bool
	// UserInfo is the requesting user, as JSON (may be nil).
	UserInfo []byte
	// Object and OldObject are the objects in Istio's JSON shape (may be nil).
	Object    []byte
	OldObject []byte
	// Checked says UserInfo, Object and OldObject are known to be valid JSON
	// (for example, decoded from an AdmissionReview by encoding/json), so
	// that Input does not check them again.
	Checked bool
}

// Prepared is a request converted for evaluation, once, so that every rule
// of an evaluation shares it: Value in the IR evaluator's form, AST in
// OPA's (for topdown). A Prepared is not safe for concurrent use.
type Prepared struct {
	Kind      string
	Namespace string
	Value     vm.Value
	// the request, and the JSON fields converted (nil: all of them)
	req    Request
	fields *fieldSet
}

// fieldSet names the JSON fields of the input (userInfo, object, oldObject)
// an engine's queries read.
type fieldSet struct{ names map[string]bool }

func (f *fieldSet) has(name string) bool { return f == nil || f.names[name] }

// covers says whether the fields converted in p include those in f.
func (p *Prepared) covers(f *fieldSet) bool {
	if p.fields == nil || p.fields == f {
		return true
	}
	if f == nil {
		return false
	}
	for name := range f.names {
		if !p.fields.names[name] {
			return false
		}
	}
	return true
}

// AST is the input as OPA's value.
func (p *Prepared) AST() ast.Value { return vm.ToAST(p.Value) }

// Input converts the request, leaving out metadata.managedFields: the API
// server's field ownership bookkeeping is often larger than the spec and no
// policy needs it.
func Input(r Request) (*Prepared, error) { return input(r, nil) }

// Input converts the request as the package function does, but only the
// JSON fields this engine's queries for the request's kind read (the rule
// pack reads object alone, but for VirtualServices, whose deletion it
// judges, userInfo and oldObject too); an engine given a Prepared that lacks
// some converts the request again.
func (e *Engine) Input(r Request) (*Prepared, error) { return input(r, e.fieldsOf(r.Kind)) }

func input(r Request, fields *fieldSet) (*Prepared, error) {
	root := vm.NewObject(
		"operation", r.Operation,
		"kind", vm.NewObject("group", r.Group, "version", r.Version, "kind", r.Kind),
		"namespace", r.Namespace,
		"name", r.Name,
		"dryRun", r.DryRun,
	)
	for _, f := range []struct {
		key string
		raw []byte
	}{{"userInfo", r.UserInfo}, {"object", r.Object}, {"oldObject", r.OldObject}} {
		if len(f.raw) == 0 || bytes.Equal(f.raw, []byte("null")) {
			continue
		}
		if !fields.has(f.key) {
			// not read, but bad JSON is still an error
			if !r.Checked {
				if err := fastjson.ValidateBytes(f.raw); err != nil {
					return nil, fmt.Errorf("%s is not valid JSON: %w", f.key, err)
				}
			}
			continue
		}
		v, err := toValue(f.raw, f.key != "userInfo", r.Checked)
		if err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", f.key, err)
		}
		root.Insert(f.key, v)
	}
	return &Prepared{Kind: r.Kind, Namespace: r.Namespace, Value: root, req: r, fields: fields}, nil
}

// parsers are reused across conversions: a parser keeps its buffers.
var parsers fastjson.ParserPool

// toValue converts a JSON document in one pass; an object's
// metadata.managedFields is left out when hideManagedFields is set.
func toValue(raw []byte, hideManagedFields, checked bool) (vm.Value, error) {
	// The parser is lenient (NaN, "1.2.3"); the validator is not.
	if !checked {
		if err := fastjson.ValidateBytes(raw); err != nil {
			return nil, err
		}
	}
	p := parsers.Get()
	defer parsers.Put(p)
	doc, err := p.ParseBytes(raw)
	if err != nil {
		return nil, err
	}
	if hideManagedFields {
		if meta := doc.GetObject("metadata"); meta != nil {
			meta.Del("managedFields")
		}
	}
	return vm.FromJSON(doc, schemaKeys()), nil
}
