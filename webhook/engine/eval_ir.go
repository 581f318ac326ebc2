package engine

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// irEvaluator runs the plans OPA's planner compiles queries into, with
// package vm. It takes the data document per evaluation.
type irEvaluator struct{}

// irQuery is a query's program and its plan.
type irQuery struct {
	text    string
	program *vm.Program
	plan    string
	// opts are what the evaluator gives the built-ins, as topdown's
	// prepared query gives them from queryOptions.
	opts vm.EvalOptions
}

// prepare plans text; an error says why the IR evaluator cannot run it.
func (irEvaluator) prepare(ctx context.Context, text string, o queryOptions) (prepared, error) {
	pol, err := vm.Plan(ctx, rego.Query(text), rego.Compiler(o.compiler), rego.Capabilities(o.capabilities))
	if err != nil {
		if m := unknownOperator.FindStringSubmatch(err.Error()); m != nil {
			if loc := callSite(o.compiler, m[1]); loc != nil {
				return nil, fmt.Errorf("OPA's planner cannot plan it: %s: %w", loc, err)
			}
		}
		return nil, fmt.Errorf("OPA's planner cannot plan it: %w", err)
	}
	prog, err := vm.Compile(pol)
	if err != nil {
		return nil, err
	}
	plans := prog.Plans()
	if len(plans) != 1 {
		return nil, fmt.Errorf("its plan has %d entry points", len(plans))
	}
	// No topdown query is kept: it would keep the compiler alive.
	return &irQuery{
		text: text, program: prog, plan: plans[0],
		opts: vm.EvalOptions{StrictBuiltinErrors: o.strict, Capabilities: o.capabilities},
	}, nil
}

func (q *irQuery) eval(ctx context.Context, input inputDoc, data *document) ([]*vm.Object, error) {
	var d vm.Value
	if data != nil {
		d = data.value
	}
	rs, err := q.program.EvalWith(ctx, q.plan, input.vmValue(), d, q.opts)
	if err != nil {
		return nil, fmt.Errorf("evaluating policies: %w", err)
	}
	out := make([]*vm.Object, 0, rs.Len())
	for _, r := range rs.Elems() {
		obj, ok := r.(*vm.Object)
		if !ok {
			return nil, fmt.Errorf("a result of %s is not an object", q.text)
		}
		out = append(out, obj)
	}
	return out, nil
}

func (q *irQuery) inputKeys() ([]string, bool) { return q.program.InputKeys() }

func (*irQuery) setsAsArrays() bool { return false }

// unknownOperator is the planner's error for a call of a built-in it has
// no declaration of; it says no more.
var unknownOperator = regexp.MustCompile(`unknown operator "([^"]+)"`)

// callSite is where the policies first call the built-in name (by file
// name and line), nil if they do not.
func callSite(c *ast.Compiler, name string) *ast.Location {
	var first *ast.Location
	for _, file := range slices.Sorted(maps.Keys(c.Modules)) {
		ast.WalkExprs(c.Modules[file], func(e *ast.Expr) bool {
			if first == nil && e.IsCall() && e.Operator().String() == name {
				first = e.Location
			}
			return first != nil
		})
		if first != nil {
			break
		}
	}
	return first
}
