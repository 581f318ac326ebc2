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
}

// AST is the input as OPA's value.
func (p *Prepared) AST() ast.Value { return vm.ToAST(p.Value) }

// Input converts the request, leaving out metadata.managedFields: the API
// server's field ownership bookkeeping is often larger than the spec and no
// policy needs it.
func Input(r Request) (*Prepared, error) {
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
		v, err := toValue(f.raw, f.key != "userInfo", r.Checked)
		if err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", f.key, err)
		}
		root.Insert(f.key, v)
	}
	return &Prepared{Kind: r.Kind, Namespace: r.Namespace, Value: root}, nil
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
