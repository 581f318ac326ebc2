package server

import (
	"bytes"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

var plainParsers fastjson.ParserPool

// readPlain is readEnvelope's fast path, for a review as the API server
// writes it: valid UTF-8 without \u escapes, each field readEnvelope reads
// present at most once, of the type the typed decoding wants (strings, and
// objects where it wants objects), and nothing wrong with them. It reads
// what the typed decoding would read, in one pass of fastjson instead of
// encoding/json's two. Any other body (ok false), a malformed one included,
// is left to the typed decoding, which says what is wrong with it.
//
// fastjson's parser is more lenient than encoding/json (it reads numbers and
// escapes lazily and lets control characters through in strings): a body
// this path takes that encoding/json would refuse is refused by
// controller-runtime's decoding, which comes next, with HTTP 400
// (answer.failure). FuzzReadPlain holds the two paths to that.
func readPlain(body []byte) (env envelope, ok bool) {
	if !utf8.Valid(body) || bytes.Contains(body, []byte(`\u`)) {
		return env, false
	}
	p := plainParsers.Get()
	defer plainParsers.Put(p)
	doc, err := p.ParseBytes(body)
	if err != nil {
		return env, false
	}
	top, ok := fields(doc, "apiVersion", "kind", "request")
	if !ok || top[2] == nil {
		return env, false
	}
	req, ok := fields(top[2], "uid", "operation", "kind", "namespace", "name", "object")
	if !ok {
		return env, false
	}
	gvk, ok := fields(req[2], "kind")
	if !ok {
		return env, false
	}
	obj, ok := fields(req[5], "metadata")
	if !ok {
		return env, false
	}
	meta, ok := fields(obj[0], "generateName")
	if !ok {
		return env, false
	}
	// Each a string, or missing where the typed decoding allows it.
	var vals [8]string
	for i, v := range []*fastjson.Value{top[0], top[1], req[0], req[1], req[3], req[4], gvk[0], meta[0]} {
		if v == nil {
			continue
		}
		if v.Type() != fastjson.TypeString {
			return env, false
		}
		b, _ := v.StringBytes()
		vals[i] = string(b)
	}
	if checkType(vals[0], vals[1]) != "" || vals[2] == "" || req[1] == nil || checkOperation(vals[3]) != "" {
		return env, false
	}
	return envelope{apiVersion: vals[0], uid: vals[2], namespace: vals[4], name: vals[5], kind: vals[6], gname: vals[7]}, true
}

// fields returns the values of the named keys of the object v (nil for a
// key not there; v nil or JSON null has none), or false when v is not an object or a key
// is given twice.
func fields(v *fastjson.Value, keys ...string) ([]*fastjson.Value, bool) {
	out := make([]*fastjson.Value, len(keys))
	if v == nil || v.Type() == fastjson.TypeNull {
		return out, true
	}
	o, err := v.Object()
	if err != nil {
		return nil, false
	}
	ok := true
	o.Visit(func(key []byte, val *fastjson.Value) {
		for i, k := range keys {
			if string(key) == k {
				if out[i] != nil {
					ok = false
				}
				out[i] = val
			}
		}
	})
	return out, ok
}
