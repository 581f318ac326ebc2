// Package engine evaluates egress-guard's Rego policies. It compiles the
// embedded rule pack together with the platform's own policy files once per
// configuration or policy change, prepares the queries once, and evaluates
// them per object against a data document (the configuration and the
// cluster's inventory) that is swapped without compiling.
//
// The package is split by concern: load.go reads and compiles the policies,
// data.go builds the data document and its indexes, query.go and the
// evaluators (eval_ir.go, eval_topdown.go) run the prepared queries, and
// results.go decodes and orders what they return.
package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// RulesPackage is the package every rule module lives under.
const RulesPackage = "egressguard.rules"

// Violation is a broken rule.
type Violation struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Field   string        `json:"field"`
	Action  config.Action `json:"action"`
}

// Options configure a new Engine.
type Options struct {
	Config *config.Config
	// PolicyDirs hold the platform's own .rego files (compiled with the pack).
	PolicyDirs []string
	// Policies are platform policy files already read (ReadPolicies),
	// compiled after those of PolicyDirs.
	Policies  []PolicyFile
	Inventory Inventory
	// Evaluator picks how queries run: EvaluatorIR (the default) or
	// EvaluatorTopdown.
	Evaluator string
}

// Evaluators. EvaluatorIR runs the plans OPA's planner compiles the policies
// into (package vm); a query whose plan it cannot run falls back to topdown,
// and Engine.Fallbacks says which and why. EvaluatorTopdown runs every query
// with OPA's interpreter.
const (
	EvaluatorIR      = "ir"
	EvaluatorTopdown = "topdown"
)

// Evaluators lists the valid Options.Evaluator values.
var Evaluators = []string{EvaluatorIR, EvaluatorTopdown}

// Engine is compiled policies with a data document. It is safe for
// concurrent use and never changes: a reload of the configuration or the
// policies builds a new Engine (New), a new inventory derives one that
// shares the compiled policies (WithInventory).
type Engine struct {
	*policy
	data *document
}

// New compiles the policies, prepares the queries and builds the data
// document.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Config == nil {
		return nil, errors.New("engine: no config")
	}
	switch opts.Evaluator {
	case "", EvaluatorIR, EvaluatorTopdown:
	default:
		return nil, fmt.Errorf("engine: unknown evaluator %q (want one of %s)", opts.Evaluator, strings.Join(Evaluators, ", "))
	}
	// The data first: a configuration the data document cannot hold fails
	// before the compiler runs.
	data, err := newDocument(opts.Config, opts.Inventory)
	if err != nil {
		return nil, err
	}
	p, err := compilePolicy(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Engine{policy: p, data: data}, nil
}

// WithInventory returns an engine with e's compiled policies and
// configuration and the inventory inv. It compiles nothing: it builds the
// inventory's part of the data document and its indexes.
func (e *Engine) WithInventory(inv Inventory) (*Engine, error) {
	data, err := e.data.withInventory(inv)
	if err != nil {
		return nil, err
	}
	return &Engine{policy: e.policy, data: data}, nil
}

// SamePolicies says whether e and other run the same compiled policies (one
// derives from the other by WithInventory).
func (e *Engine) SamePolicies(other *Engine) bool {
	return other != nil && e.policy == other.policy
}

// Config is the configuration the engine was built with.
func (e *Engine) Config() *config.Config { return e.cfg }

// Modules lists the policy files compiled in, embedded ones first.
func (e *Engine) Modules() []string { return e.modules }

// Fallbacks lists the queries the IR evaluator could not run, with the
// reason; topdown evaluates them.
func (e *Engine) Fallbacks() []string { return e.fallbacks }

// ServiceEntries is the number of ServiceEntries in the engine's inventory.
func (e *Engine) ServiceEntries() int { return e.data.serviceEntries }
