package engine

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// evaluator is one way of running queries: the IR evaluator (irEvaluator)
// or OPA's interpreter (topdownEvaluator).
type evaluator interface {
	// prepare readies the query text, once, for many evaluations.
	prepare(ctx context.Context, text string, o queryOptions) (prepared, error)
}

// prepared is a query an evaluator readied. It is evaluated many times,
// concurrently.
type prepared interface {
	// eval runs the query on input and data and returns its results: one
	// object per result, binding the query's variables (as OPA's result set
	// does).
	eval(ctx context.Context, input inputDoc, data *document) ([]*vm.Object, error)
	// inputKeys are the input's top-level fields the query reads; whole
	// when it may read any.
	inputKeys() (keys []string, whole bool)
	// setsAsArrays: the results come as JSON, where a set is an array.
	setsAsArrays() bool
}

// query is a prepared query: by the IR evaluator, or by topdown when the IR
// evaluator cannot run it (fallback says why) or topdown was asked for.
type query struct {
	text string
	prepared
	// fallback says why topdown runs the query ("" when the IR does or
	// topdown was asked for).
	fallback string
}

// queryOptions are what a query is prepared with.
type queryOptions struct {
	compiler *ast.Compiler
	// evaluator is EvaluatorIR ("") or EvaluatorTopdown.
	evaluator string
	// capabilities bound what the built-ins may reach at run time (the
	// compiler has already refused built-ins they leave out).
	capabilities *ast.Capabilities
	// strict makes a built-in's error an evaluation error, as OPA's
	// rego.StrictBuiltinErrors; by default the call is undefined.
	strict bool
}

// prepareQuery prepares text for the IR evaluator and, when the planner
// cannot plan it or the evaluator cannot run the plan, for topdown instead.
// Only an error topdown gives too (a query that does not compile) fails.
func prepareQuery(ctx context.Context, text string, o queryOptions) (*query, error) {
	q := &query{text: text}
	if o.evaluator != EvaluatorTopdown {
		p, err := irEvaluator{}.prepare(ctx, text, o)
		if err == nil {
			q.prepared = p
			return q, nil
		}
		q.fallback = err.Error()
	}
	p, err := topdownEvaluator{}.prepare(ctx, text, o)
	if err != nil {
		return nil, err
	}
	q.prepared = p
	return q, nil
}

// onIR says whether the IR evaluator runs the query.
func (q *query) onIR() bool {
	_, ok := q.prepared.(*irQuery)
	return ok
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

// exprKey binds the value of a query without variables in eval's results
// from topdown.
const exprKey = "$expr"

// value evaluates a query of one expression without variables (a ref) and
// returns its value, nil when undefined.
func (q *query) value(ctx context.Context, input inputDoc, data *document) (vm.Value, error) {
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
