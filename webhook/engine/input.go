package engine

import (
	"bytes"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/valyala/fastjson"
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

// parsers are reused across conversions: a parser keeps its buffers.
var parsers fastjson.ParserPool

// toValue converts a JSON document into OPA's value in one pass, leaving out
// metadata.managedFields: the API server's field ownership bookkeeping is
// often larger than the spec and no policy needs it.
func toValue(raw []byte) (ast.Value, error) {
	// The parser is lenient (NaN, "1.2.3"); the validator is not.
	if err := fastjson.ValidateBytes(raw); err != nil {
		return nil, err
	}
	p := parsers.Get()
	defer parsers.Put(p)
	doc, err := p.ParseBytes(raw)
	if err != nil {
		return nil, err
	}
	return convert(doc, 0), nil
}

// convert builds the value of v; depth counts the objects above v, so that
// metadata.managedFields is recognised at the top level only.
func convert(v *fastjson.Value, depth int) ast.Value {
	switch v.Type() {
	case fastjson.TypeObject:
		o := v.GetObject()
		items := make([][2]*ast.Term, 0, o.Len())
		o.Visit(func(key []byte, x *fastjson.Value) {
			var val ast.Value
			if depth == 1 && string(key) == "managedFields" {
				return
			}
			if depth == 0 && string(key) == "metadata" {
				val = convert(x, 1)
			} else {
				val = convert(x, 2)
			}
			items = append(items, [2]*ast.Term{ast.StringTerm(string(key)), ast.NewTerm(val)})
		})
		return ast.NewObject(items...)
	case fastjson.TypeArray:
		a := v.GetArray()
		terms := make([]*ast.Term, len(a))
		for i, x := range a {
			terms[i] = ast.NewTerm(convert(x, 2))
		}
		return ast.NewArray(terms...)
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return ast.String(string(b))
	case fastjson.TypeNumber:
		return ast.Number(v.MarshalTo(nil))
	case fastjson.TypeTrue:
		return ast.Boolean(true)
	case fastjson.TypeFalse:
		return ast.Boolean(false)
	default:
		return ast.Null{}
	}
}
