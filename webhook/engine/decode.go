package engine

import (
	"fmt"
	"math"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egress-guard/egress-guard/mutators"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// record reads the fields of an object a policy returned, checking their
// types; the first wrong one is kept in err.
type record struct {
	obj  *vm.Object
	what string
	err  error
}

func newRecord(v vm.Value, what string) (*record, error) {
	obj, ok := v.(*vm.Object)
	if !ok {
		return nil, fmt.Errorf("policy returned %s that is not an object: %v", what, vm.ToAST(v))
	}
	return &record{obj: obj, what: what}, nil
}

func (r *record) get(key string) vm.Value { return r.obj.GetString(key) }

func (r *record) fail(key string, v vm.Value, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("policy returned %s whose %s is not %s: %v", r.what, key, want, vm.ToAST(v))
	}
}

func (r *record) str(key string) string {
	v := r.get(key)
	if v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		r.fail(key, v, "a string")
	}
	return s
}

func (r *record) uint(key string, v vm.Value, limit uint64) uint64 {
	if v == nil {
		return 0
	}
	n, ok := v.(ast.Number)
	if !ok {
		r.fail(key, v, "a number")
		return 0
	}
	i, ok := n.Int64()
	if !ok || i < 0 || uint64(i) > limit {
		r.fail(key, v, fmt.Sprintf("an integer from 0 to %d", limit))
		return 0
	}
	return uint64(i)
}

func (r *record) int(key string) int { return int(r.uint(key, r.get(key), math.MaxInt32)) }

func (r *record) uint32(key string) uint32 {
	return uint32(r.uint(key, r.get(key), math.MaxUint32))
}

func (r *record) uint32s(key string) []uint32 {
	return list(r, key, func(e vm.Value) uint32 { return uint32(r.uint(key, e, math.MaxUint32)) })
}

func (r *record) strs(key string) []string {
	return list(r, key, func(e vm.Value) string {
		s, ok := e.(string)
		if !ok {
			r.fail(key, e, "a string")
		}
		return s
	})
}

// list converts the array at key, each element by conv (which records its
// own failure); absent is nil.
func list[T any](r *record, key string, conv func(vm.Value) T) []T {
	v := r.get(key)
	if v == nil {
		return nil
	}
	arr, ok := v.(*vm.Array)
	if !ok {
		r.fail(key, v, "an array")
		return nil
	}
	out := make([]T, arr.Len())
	for i, e := range arr.Elems() {
		out[i] = conv(e)
	}
	return out
}

func decodeViolation(t vm.Value) (Violation, error) {
	r, err := newRecord(t, "a violation")
	if err != nil {
		return Violation{}, err
	}
	v := Violation{Code: r.str("code"), Message: r.str("message"), Field: r.str("field"), Action: config.Action(r.str("action"))}
	if r.err != nil {
		return v, r.err
	}
	if v.Code == "" || v.Message == "" {
		return v, fmt.Errorf("policy returned a violation without code or message: %v", vm.ToAST(t))
	}
	return v, nil
}

// Intent is a mutation a policy asks for, decoded into the type of the
// package that applies it.
type Intent = mutators.Intent

// decodeIntent decodes an intent into its typed mutation, the one its type
// names; an intent of another type keeps its type alone, and applying it is
// an error.
func decodeIntent(t vm.Value) (Intent, error) {
	r, err := newRecord(t, "an intent")
	if err != nil {
		return Intent{}, err
	}
	in := Intent{Type: r.str("type"), Code: r.str("code"), Action: config.Action(r.str("action"))}
	switch in.Type {
	case mutators.TypeRouteViaGateway:
		in.RouteViaGateway = &mutators.RouteViaGateway{
			Section: r.str("section"), Index: r.int("index"),
			GatewayHost: r.str("gatewayHost"), Gateway: r.str("gateway"), GatewayPort: r.uint32("gatewayPort"),
			GatewaySubset: r.str("gatewaySubset"), TargetPorts: r.uint32s("targetPorts"), ListenerPort: r.uint32("listenerPort"),
		}
	case mutators.TypeOriginateTLS:
		in.OriginateTLS = &mutators.OriginateTLS{
			Port: r.uint32("port"), Mode: r.str("mode"), CredentialName: r.str("credentialName"), SNI: r.str("sni"),
		}
	case mutators.TypeRestrictExport:
		in.RestrictExport = &mutators.RestrictExport{ExportTo: r.strs("exportTo")}
	case mutators.TypeOriginationPort:
		in.OriginationPort = &mutators.OriginationPort{To: r.uint32("to")}
		if leg, err := newRecord(r.get("leg"), "an intent's leg"); err != nil {
			r.fail("leg", r.get("leg"), "an object")
		} else {
			in.OriginationPort.Leg = mutators.LegRef{Section: leg.str("section"), Index: leg.int("index"), Route: leg.int("route")}
			if r.err == nil {
				r.err = leg.err
			}
		}
	}
	return in, r.err
}
