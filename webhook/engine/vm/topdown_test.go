package vm_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// outcome is an evaluation's result: the query's value in Rego's syntax
// ("" when undefined), or its error.
type outcome struct {
	value string
	err   error
}

func (o outcome) String() string {
	switch {
	case o.err != nil:
		return "error: " + o.err.Error()
	case o.value == "":
		return "undefined"
	}
	return o.value
}

// code is the error's topdown code, "" for no error, "other" for an error
// of another kind.
func (o outcome) code() string {
	if o.err == nil {
		return ""
	}
	var te *topdown.Error
	if errors.As(o.err, &te) {
		return te.Code
	}
	return "other"
}

// compileRego compiles Rego v1 modules; print statements are kept when
// print is set.
func compileRego(modules map[string]string, print bool) (*ast.Compiler, error) {
	parsed := map[string]*ast.Module{}
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, err
		}
		parsed[name] = m
	}
	c := ast.NewCompiler().WithEnablePrintStatements(print)
	if c.Compile(parsed); c.Failed() {
		return nil, c.Errors
	}
	return c, nil
}

// viaTopdown evaluates query as rego.Eval does; input and data may be nil.
func viaTopdown(ctx context.Context, c *ast.Compiler, query string, input, data ast.Value, opts ...func(*rego.Rego)) outcome {
	return viaTopdownWith(ctx, c, query, input, data, nil, opts...)
}

// errTopdownPanicked marks an evaluation in which topdown panicked (its
// walk does, on objects with composite keys).
var errTopdownPanicked = errors.New("topdown panicked")

// viaTopdownWith is viaTopdown with evaluation options.
func viaTopdownWith(ctx context.Context, c *ast.Compiler, query string, input, data ast.Value, eopts []rego.EvalOption, opts ...func(*rego.Rego)) (out outcome) {
	defer func() {
		if r := recover(); r != nil {
			out = outcome{err: fmt.Errorf("%w: %v", errTopdownPanicked, r)}
		}
	}()
	if data == nil {
		data = ast.NewObject()
	}
	doc, err := ast.JSON(data)
	if err != nil {
		return outcome{err: err}
	}
	opts = append([]func(*rego.Rego){
		rego.Query(query), rego.Compiler(c),
		rego.Store(inmem.NewFromObject(doc.(map[string]any))),
		// the values as ast terms, to compare them exactly
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	}, opts...)
	if input != nil {
		opts = append(opts, rego.ParsedInput(input))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return outcome{err: err}
	}
	rs, err := pq.Eval(ctx, eopts...)
	if err != nil {
		return outcome{err: err}
	}
	switch len(rs) {
	case 0:
		return outcome{}
	case 1:
		return outcome{value: rs[0].Expressions[0].Value.(*ast.Term).String()}
	}
	return outcome{err: fmt.Errorf("%d results", len(rs))}
}

// programFor plans and compiles query; the error is Plan's or Compile's.
func programFor(ctx context.Context, c *ast.Compiler, query string) (*vm.Program, error) {
	pol, err := vm.Plan(ctx, rego.Query(query), rego.Compiler(c))
	if err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	return vm.Compile(pol)
}

// viaVM evaluates query with the IR evaluator.
func viaVM(ctx context.Context, p *vm.Program, input, data ast.Value, opts vm.EvalOptions) outcome {
	if data == nil {
		data = ast.NewObject()
	}
	var in vm.Value
	if input != nil {
		in = vm.FromAST(input)
	}
	rs, err := p.EvalWith(ctx, p.Plans()[0], in, vm.Share(vm.FromAST(data)), opts)
	if err != nil {
		return outcome{err: err}
	}
	var values []vm.Value
	for _, r := range rs.Elems() {
		values = append(values, r.(*vm.Object).Values()...)
	}
	switch len(values) {
	case 0:
		return outcome{}
	case 1:
		return outcome{value: ast.NewTerm(vm.ToAST(values[0])).String()}
	}
	return outcome{err: fmt.Errorf("%d results", len(values))}
}

// agreement is a comparison of the evaluators on one policy.
type agreement struct {
	modules map[string]string
	query   string
	input   string // Rego term; "" for none
	data    string
	strict  bool
	print   bool
}

// compare evaluates with both evaluators; td and v are their outcomes.
func (a agreement) compare(t testing.TB) (td, v outcome) {
	t.Helper()
	c, err := compileRego(a.modules, a.print)
	if err != nil {
		t.Fatal(err)
	}
	var input, data ast.Value
	if a.input != "" {
		input = ast.MustParseTerm(a.input).Value
	}
	if a.data != "" {
		data = ast.MustParseTerm(a.data).Value
	}
	p, err := programFor(t.Context(), c, a.query)
	if err != nil {
		t.Fatalf("%s: %v", a.query, err)
	}
	td = viaTopdown(t.Context(), c, a.query, input, data, rego.StrictBuiltinErrors(a.strict))
	v = viaVM(t.Context(), p, input, data, vm.EvalOptions{StrictBuiltinErrors: a.strict})
	return td, v
}

// agree requires the evaluators to give the same value, or errors with the
// same message.
func (a agreement) agree(t testing.TB) outcome {
	t.Helper()
	td, v := a.compare(t)
	if td.String() != v.String() {
		t.Errorf("%s:\n vm:      %v\n topdown: %v", a.query, v, td)
	}
	return v
}
