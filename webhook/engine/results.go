package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// Violations evaluates the rules against input.
func (e *Engine) Violations(ctx context.Context, input *Prepared) ([]Violation, error) {
	set, err := e.eval(ctx, e.queries(input.Kind).violations, input)
	if err != nil {
		return nil, err
	}
	out := make([]Violation, 0, len(set))
	for _, x := range set {
		v, err := decodeViolation(x)
		if err != nil {
			return nil, err
		}
		if v.Action != "" && !validAction(v.Action) {
			return nil, fmt.Errorf("policy rule %s returned unknown action %q", v.Code, v.Action)
		}
		v.Action = e.cfg.ActionFor(v.Code, input.Namespace, v.Action)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Code != out[j].Code {
			return out[i].Code < out[j].Code
		}
		return out[i].Field < out[j].Field
	})
	return out, nil
}

// Intents evaluates the mutation intents for input.
func (e *Engine) Intents(ctx context.Context, input *Prepared) ([]Intent, error) {
	set, err := e.eval(ctx, e.queries(input.Kind).intents, input)
	if err != nil || len(set) == 0 {
		return nil, err
	}
	out := make([]Intent, 0, len(set))
	for _, x := range set {
		in, err := decodeIntent(x)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	for i := range out {
		if out[i].Action != "" && !validAction(out[i].Action) {
			return nil, fmt.Errorf("policy intent %s returned unknown action %q", out[i].Type, out[i].Action)
		}
		out[i].Action = e.cfg.ActionFor(out[i].Code, input.Namespace, out[i].Action)
	}
	// Mutators apply intents in order: the same order every time, whichever
	// evaluator ran.
	if len(out) > 1 {
		type keyed struct {
			key string
			in  Intent
		}
		ks := make([]keyed, len(out))
		for i, in := range out {
			b, _ := json.Marshal(in)
			ks[i] = keyed{string(b), in}
		}
		slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
		for i := range ks {
			out[i] = ks[i].in
		}
	}
	return out, nil
}

// eval runs a query on the engine's data and returns the elements of the
// set it yields.
func (e *Engine) eval(ctx context.Context, q *query, input *Prepared) ([]vm.Value, error) {
	if !input.covers(e.fieldsOf(input.Kind)) {
		// prepared by another engine, reading fewer fields
		var err error
		if input, err = e.Input(input.req); err != nil {
			return nil, err
		}
	}
	value, err := q.value(ctx, input, e.data)
	if err != nil || value == nil {
		return nil, err
	}
	switch v := value.(type) {
	case *vm.Set:
		return v.Elems(), nil
	case *vm.Array:
		if q.setsAsArrays() {
			return v.Elems(), nil
		}
	}
	return nil, fmt.Errorf("policy result is not a set: %v", vm.ToAST(value))
}

func validAction(a config.Action) bool {
	return slices.Contains(config.Actions, a)
}
