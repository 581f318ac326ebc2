// Package object decodes the Istio objects egress-guard handles into
// istio.io/client-go types and writes them back in Istio's JSON shape, and
// checks workloads in files against their k8s.io/api types.
package object

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/golang/protobuf/proto" //nolint:staticcheck // the Istio API types are generated for it
	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/runtime/protoimpl"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	kjson "sigs.k8s.io/json"
)

// Group is the API group of the handled kinds.
const Group = "networking.istio.io"

// The kinds egress-guard handles.
const (
	ServiceEntry    = "ServiceEntry"
	VirtualService  = "VirtualService"
	DestinationRule = "DestinationRule"
	Sidecar         = "Sidecar"
)

// Kinds lists the kinds decoded into their Istio types: those the embedded
// rule pack reads or its mutators change (a spec Istio cannot decode is
// denied naming the field). Other policed kinds reach the policies as their
// JSON. The workload kinds are checked against their k8s.io/api types in
// files (Check); the API server decodes them itself before admission.
var Kinds = []string{ServiceEntry, VirtualService, DestinationRule, Sidecar}

// Typed reports whether group/kind is decoded into its Istio type.
func Typed(group, kind string) bool {
	if group != Group {
		return false
	}
	for _, k := range Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// New returns an empty typed object of kind, or nil.
func New(kind string) client.Object {
	switch kind {
	case ServiceEntry:
		return &networkingv1.ServiceEntry{}
	case VirtualService:
		return &networkingv1.VirtualService{}
	case DestinationRule:
		return &networkingv1.DestinationRule{}
	case Sidecar:
		return &networkingv1.Sidecar{}
	}
	return nil
}

// envelope splits an object into its metadata part and its spec.
type envelope struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
	Status     json.RawMessage `json:"status"`
}

// DecodeSpec decodes the spec of raw JSON into the typed object of kind; the
// metadata is left out (the mutators work on the spec; callers set the name
// and namespace). Strict decoding also rejects fields the Istio type does not
// have (the API server prunes those before admission; files given to the CLI
// are not pruned). Errors name the field where the decoder can tell.
func DecodeSpec(kind string, raw []byte, strict bool) (client.Object, error) {
	return decode(kind, raw, strict, false)
}

// Decode decodes raw into the typed object of kind, its spec as DecodeSpec
// does. Strict decoding (files) covers the metadata too; lenient decoding
// leaves it to the API server, which decodes it itself before admission and
// never sends malformed metadata.
func Decode(kind string, raw []byte, strict bool) (client.Object, error) {
	return decode(kind, raw, strict, strict)
}

// FieldError is a decoding error the decoder could place: the field, as
// a path (spec.ports[0].number), and what is wrong with it.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

func decode(kind string, raw []byte, strict, meta bool) (client.Object, error) {
	obj := New(kind)
	if obj == nil {
		return nil, fmt.Errorf("kind %q is not one of %s", kind, strings.Join(Kinds, ", "))
	}
	env, ok := split(raw, strict)
	if !ok {
		errs, err := kjson.UnmarshalStrict(raw, &env)
		if err != nil {
			return nil, fmt.Errorf("not a valid object: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		if strict && len(errs) > 0 {
			return nil, fmt.Errorf("%s", strings.TrimPrefix(errs[0].Error(), "json: "))
		}
	}
	if meta {
		if err := decodeMeta(&env, obj, strict); err != nil {
			return nil, err
		}
	}
	if len(env.Spec) > 0 && !bytes.Equal(env.Spec, []byte("null")) {
		u := protojson.UnmarshalOptions{DiscardUnknown: !strict}
		if err := u.Unmarshal(env.Spec, protoimpl.X.ProtoMessageV2Of(Spec(obj))); err != nil {
			return nil, specError(env.Spec, err)
		}
	}
	return obj, nil
}

var parsers fastjson.ParserPool

// split cuts raw into its envelope in one pass. It declines (ok false) in
// strict mode and for anything but valid JSON of an object with string (or
// null) apiVersion and kind, each top-level field once: the full decoder
// then explains what is wrong.
func split(raw []byte, strict bool) (env envelope, ok bool) {
	if strict || fastjson.ValidateBytes(raw) != nil {
		return env, false
	}
	p := parsers.Get()
	defer parsers.Put(p)
	doc, err := p.ParseBytes(raw)
	if err != nil || doc.Type() != fastjson.TypeObject {
		return env, false
	}
	ok = true
	seen := map[string]bool{}
	doc.GetObject().Visit(func(key []byte, v *fastjson.Value) {
		k := string(key)
		switch k {
		case "apiVersion", "kind", "metadata", "spec":
			ok = ok && !seen[k]
			seen[k] = true
		}
		switch k {
		case "apiVersion", "kind":
			var s string
			switch v.Type() {
			case fastjson.TypeString:
				b, _ := v.StringBytes()
				s = string(b)
			case fastjson.TypeNull:
			default:
				ok = false
			}
			if k == "kind" {
				env.Kind = s
			} else {
				env.APIVersion = s
			}
		case "metadata":
			env.Metadata = v.MarshalTo(nil)
		case "spec":
			env.Spec = v.MarshalTo(nil)
		}
	})
	return env, ok
}

func decodeMeta(env *envelope, obj client.Object, strict bool) error {
	if len(env.Metadata) > 0 {
		errs, err := kjson.UnmarshalStrict(env.Metadata, objectMeta(obj))
		if err != nil {
			return fmt.Errorf("metadata: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		if strict && len(errs) > 0 {
			return fmt.Errorf("metadata.%s", strings.TrimPrefix(errs[0].Error(), "json: unknown field "))
		}
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk(env.APIVersion, env.Kind))
	return nil
}

// Spec returns the object's Istio API spec message.
func Spec(obj client.Object) proto.Message {
	switch o := obj.(type) {
	case *networkingv1.ServiceEntry:
		return &o.Spec
	case *networkingv1.VirtualService:
		return &o.Spec
	case *networkingv1.DestinationRule:
		return &o.Spec
	case *networkingv1.Sidecar:
		return &o.Spec
	}
	return nil
}

// MarshalSpec writes the spec of the object in Istio's JSON shape (the
// protobuf JSON mapping: lowerCamelCase names, enums by name, unset fields
// left out), as {"spec": ...}: a diff of two such documents patches the
// spec of the whole object. The bytes are for diffing, not for display: the
// encoder's spacing is its own.
func MarshalSpec(obj client.Object) ([]byte, error) {
	spec, err := protojson.Marshal(protoimpl.X.ProtoMessageV2Of(Spec(obj)))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(spec)+10)
	out = append(out, `{"spec":`...)
	out = append(out, spec...)
	return append(out, '}'), nil
}

// ID names an object for messages: Kind namespace/name.
func ID(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

var protoErrorAt = regexp.MustCompile(`^proto:[\s\x{00a0}]+(?:syntax error )?\(line (\d+):(\d+)\):[\s\x{00a0}]*`)

// specError names the field the decoder stopped at: "spec.ports[0].number:
// invalid value for uint32 field number: \"eighty\"".
func specError(spec []byte, err error) error {
	msg := err.Error()
	m := protoErrorAt.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("spec: %s", strings.TrimPrefix(msg, "proto: "))
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	return &FieldError{Field: pathAt(spec, offsetOf(spec, line, col), "spec"), Detail: msg[len(m[0]):]}
}
