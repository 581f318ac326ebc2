package vm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
)

// OPA's planner is reachable only through a rego target plugin: Plan
// registers one, once, under this name. The plugin keeps no state; it hands
// the plan to the caller through the context of PrepareForEval.
const target = "egress-guard-plan"

var registerOnce sync.Once

type planSlot struct{ policy *ir.Policy }

type slotKey struct{}

type capture struct{}

func (capture) IsTarget(t string) bool { return t == target }

func (capture) PrepareForEval(ctx context.Context, pol *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	slot, ok := ctx.Value(slotKey{}).(*planSlot)
	if !ok {
		return nil, errors.New("vm: the plan target is for vm.Plan only")
	}
	slot.policy = pol
	return noEval{}, nil
}

type noEval struct{}

func (noEval) Eval(context.Context, *rego.EvalContext, ast.Value) (ast.Value, error) {
	return nil, errors.New("vm: a captured plan is evaluated by vm.Program")
}

// Plan asks OPA's planner for the IR of the query the options describe
// (rego.Query, rego.Compiler, ...). A panic of the planner (it has some,
// on functions a with replaces by themselves) is an ErrUnsupported error.
func Plan(ctx context.Context, opts ...func(*rego.Rego)) (pol *ir.Policy, err error) {
	defer func() {
		if r := recover(); r != nil {
			pol, err = nil, fmt.Errorf("%w: OPA's planner failed: %v", ErrUnsupported, r)
		}
	}()
	registerOnce.Do(func() { rego.RegisterPlugin(target, capture{}) })
	slot := &planSlot{}
	opts = append(opts[:len(opts):len(opts)], rego.Target(target))
	if _, err := rego.New(opts...).PrepareForEval(context.WithValue(ctx, slotKey{}, slot)); err != nil {
		return nil, err
	}
	if slot.policy == nil {
		return nil, errors.New("vm: the planner returned no plan")
	}
	return slot.policy, nil
}
