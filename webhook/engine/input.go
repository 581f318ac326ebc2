package engine

import (
	"bytes"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
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
}

// Prepared is a request converted into OPA's value.
type Prepared struct {
	Kind      string
	Namespace string
	Value     ast.Value
}

// Input converts the request into OPA's value once, so that every rule of
// an evaluation shares it.
func Input(r Request) (*Prepared, error) {
	items := [][2]*ast.Term{
		ast.Item(ast.StringTerm("operation"), ast.StringTerm(r.Operation)),
		ast.Item(ast.StringTerm("kind"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("group"), ast.StringTerm(r.Group)),
			ast.Item(ast.StringTerm("version"), ast.StringTerm(r.Version)),
			ast.Item(ast.StringTerm("kind"), ast.StringTerm(r.Kind)),
		)),
		ast.Item(ast.StringTerm("namespace"), ast.StringTerm(r.Namespace)),
		ast.Item(ast.StringTerm("name"), ast.StringTerm(r.Name)),
		ast.Item(ast.StringTerm("dryRun"), ast.BooleanTerm(r.DryRun)),
	}
	for _, f := range []struct {
		key string
		raw []byte
	}{{"userInfo", r.UserInfo}, {"object", r.Object}, {"oldObject", r.OldObject}} {
		if len(f.raw) == 0 || bytes.Equal(f.raw, []byte("null")) {
			continue
		}
		v, err := toValue(f.raw)
		if err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", f.key, err)
		}
		items = append(items, ast.Item(ast.StringTerm(f.key), ast.NewTerm(v)))
	}
	return &Prepared{Kind: r.Kind, Namespace: r.Namespace, Value: ast.NewObject(items...)}, nil
}

// toValue converts a JSON document into OPA's value, leaving out
// metadata.managedFields: the API server's field ownership bookkeeping is
// often larger than the spec and no policy needs it.
func toValue(raw []byte) (ast.Value, error) {
	var doc any
	if err := util.NewJSONDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		return nil, err
	}
	if obj, ok := doc.(map[string]any); ok {
		if meta, ok := obj["metadata"].(map[string]any); ok {
			delete(meta, "managedFields")
		}
	}
	return ast.InterfaceToValue(doc)
}
