package engine

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// topdownEvaluator runs queries with OPA's interpreter. Its prepared
// queries read data through a dataStore, from the document each evaluation
// is given.
type topdownEvaluator struct{}

type topdownQuery struct {
	pq rego.PreparedEvalQuery
}

func (topdownEvaluator) prepare(ctx context.Context, text string, o queryOptions) (prepared, error) {
	pq, err := rego.New(
		rego.Query(text), rego.Compiler(o.compiler), rego.Store(dataStore{}),
		rego.Capabilities(o.capabilities), rego.StrictBuiltinErrors(o.strict),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", text, err)
	}
	return &topdownQuery{pq: pq}, nil
}

func (q *topdownQuery) eval(ctx context.Context, input inputDoc, data *document) ([]*vm.Object, error) {
	if data == nil {
		data = emptyDocument()
	}
	txn, err := data.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("evaluating policies: %w", err)
	}
	defer txn.end(ctx)
	opts := []rego.EvalOption{rego.EvalTransaction(txn)}
	if in := input.astValue(); in != nil {
		opts = append(opts, rego.EvalParsedInput(in))
	}
	rs, err := q.pq.Eval(ctx, opts...)
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

// inputKeys: topdown may read any field.
func (*topdownQuery) inputKeys() ([]string, bool) { return nil, true }

func (*topdownQuery) setsAsArrays() bool { return true }
