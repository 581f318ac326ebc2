package engine

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// query is a prepared query: its plan when the IR evaluator runs it, else
// topdown's prepared query. Either way it is prepared once and evaluated
// many times, concurrently.
type query struct {
	text    string
	topdown rego.PreparedEvalQuery
	program *vm.Program
	plan    string
	// fallback says why topdown runs the query ("" when the IR does).
	fallback string
	// opts are what the IR evaluator gives the built-ins, as topdown's
	// prepared query gives them from queryOptions.
	opts vm.EvalOptions
}

// queryOptions are what a query is prepared with.
type queryOptions struct {
	compiler *ast.Compiler
	// store holds the data document for topdown.
	store storage.Store
	// evaluator is EvaluatorIR ("") or EvaluatorTopdown.
	evaluator string
	// capabilities bound what the built-ins may reach at run time (the
	// compiler has already refused built-ins they leave out).
	capabilities *ast.Capabilities
	// strict makes a built-in's error an evaluation error, as OPA's
	// rego.StrictBuiltinErrors; by default the call is undefined.
	strict bool
}

// prepareQuery plans text for the IR evaluator and, when the planner cannot
// plan it or the evaluator cannot run the plan, prepares it for topdown
// instead. Only an error topdown gives too (a query that does not compile)
// fails.
func prepareQuery(ctx context.Context, text string, o queryOptions) (*query, error) {
	q := &query{text: text, opts: vm.EvalOptions{StrictBuiltinErrors: o.strict, Capabilities: o.capabilities}}
	if o.evaluator != EvaluatorTopdown {
		prog, plan, err := planQuery(ctx, text, o)
		if err == nil {
			q.program, q.plan = prog, plan
			// No topdown query: it would keep the compiler alive.
			return q, nil
		}
		q.fallback = err.Error()
	}
	pq, err := rego.New(
		rego.Query(text), rego.Compiler(o.compiler), rego.Store(o.store),
		rego.Capabilities(o.capabilities), rego.StrictBuiltinErrors(o.strict),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", text, err)
	}
	q.topdown = pq
	return q, nil
}

// planQuery compiles text to the IR evaluator's program.
func planQuery(ctx context.Context, text string, o queryOptions) (*vm.Program, string, error) {
	pol, err := vm.Plan(ctx, rego.Query(text), rego.Compiler(o.compiler), rego.Capabilities(o.capabilities))
	if err != nil {
		if m := unknownOperator.FindStringSubmatch(err.Error()); m != nil {
			if loc := callSite(o.compiler, m[1]); loc != nil {
				return nil, "", fmt.Errorf("OPA's planner cannot plan it: %s: %w", loc, err)
			}
		}
		return nil, "", fmt.Errorf("OPA's planner cannot plan it: %w", err)
	}
	prog, err := vm.Compile(pol)
	if err != nil {
		return nil, "", err
	}
	plans := prog.Plans()
	if len(plans) != 1 {
		return nil, "", fmt.Errorf("its plan has %d entry points", len(plans))
	}
	return prog, plans[0], nil
}

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

// input is the input document in the two forms the evaluators take.
type inputDoc interface {
	vmValue() vm.Value
	astValue() ast.Value
}

func (p *Prepared) vmValue() vm.Value   { return p.Value }
func (p *Prepared) astValue() ast.Value { return p.AST() }

// astInput is an input given as OPA's value.
type astInput struct {
	ast ast.Value
	vm  vm.Value
}

func newASTInput(v ast.Value) *astInput {
	if v == nil {
		return &astInput{}
	}
	return &astInput{ast: v, vm: vm.Share(vm.FromAST(v))}
}

func (a *astInput) vmValue() vm.Value   { return a.vm }
func (a *astInput) astValue() ast.Value { return a.ast }

// eval runs the query and returns its results: one object per result,
// binding the query's variables (as OPA's result set does).
func (q *query) eval(ctx context.Context, input inputDoc, data vm.Value) ([]*vm.Object, error) {
	if q.program == nil {
		var opts []rego.EvalOption
		if in := input.astValue(); in != nil {
			opts = append(opts, rego.EvalParsedInput(in))
		}
		rs, err := q.topdown.Eval(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("evaluating policies: %w", err)
		}
		out := make([]*vm.Object, 0, len(rs))
		for _, r := range rs {
			obj := vm.NewObject()
			for name, v := range r.Bindings {
				val, err := ast.InterfaceToValue(v)
				if err != nil {
					return nil, err
				}
				obj.Insert(name, vm.FromAST(val))
			}
			// A query without variables (a ref) yields its value as an
			// expression, which the plan binds to a variable of its own.
			if len(r.Bindings) == 0 && len(r.Expressions) == 1 {
				val, err := ast.InterfaceToValue(r.Expressions[0].Value)
				if err != nil {
					return nil, err
				}
				obj.Insert(exprKey, vm.FromAST(val))
			}
			out = append(out, obj)
		}
		return out, nil
	}
	rs, err := q.program.EvalWith(ctx, q.plan, input.vmValue(), data, q.opts)
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

// exprKey binds the value of a query without variables in eval's results
// from topdown.
const exprKey = "$expr"

// value evaluates a query of one expression without variables (a ref) and
// returns its value, nil when undefined.
func (q *query) value(ctx context.Context, input inputDoc, data vm.Value) (vm.Value, error) {
	rs, err := q.eval(ctx, input, data)
	if err != nil {
		return nil, err
	}
	var value vm.Value
	var n int
	for _, obj := range rs {
		for _, v := range obj.Values() {
			value, n = v, n+1
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("policy query %s returned %d values", q.text, n)
	}
	return value, nil
}

// fallbackReason is a one-line reason topdown runs a query.
func (q *query) fallbackReason() string {
	// The planner names a rule's function g<n>.data.<package>.<rule>; the
	// author knows it as data.<package>.<rule>.
	return planName.ReplaceAllString(strings.ReplaceAll(q.fallback, "\n", "; "), "data.")
}

var planName = regexp.MustCompile(`\bg[0-9]+\.data\.`)
