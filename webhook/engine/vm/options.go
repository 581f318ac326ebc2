package vm

import (
	"context"
	"crypto/rand"
	"io"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/open-policy-agent/opa/v1/tracing"
)

// EvalOptions are what an evaluation gives OPA's built-ins beyond input and
// data, as rego.Eval's options give them to topdown. The zero value means
// topdown's defaults.
type EvalOptions struct {
	// Seed is the source of randomness (rand.intn, uuid.rfc4122, ...);
	// nil: crypto/rand.Reader.
	Seed io.Reader
	// Time is the evaluation's clock (time.now_ns, the caches' expiry),
	// the same for every call; zero: when the evaluation starts.
	Time time.Time
	// Metrics receives the built-ins' metrics; nil: a registry of the
	// evaluation's own.
	Metrics metrics.Metrics
	// Runtime is what opa.runtime returns.
	Runtime *ast.Term
	// PrintHook receives the output of print; nil: print does nothing.
	// The policies must be compiled with print statements enabled
	// (ast.Compiler.WithEnablePrintStatements), or there is nothing to print.
	PrintHook print.Hook
	// Caches kept across evaluations (http.send, regex, glob, ...); nil
	// means none.
	InterQueryBuiltinCache      cache.InterQueryCache
	InterQueryBuiltinValueCache cache.InterQueryValueCache
	// NDBuiltinCache records the results of non-deterministic built-ins.
	NDBuiltinCache builtins.NDBCache
	// StrictBuiltinErrors makes the first error of a built-in the
	// evaluation's error (rego.StrictBuiltinErrors); without it, a call
	// that fails is undefined.
	StrictBuiltinErrors bool
	// Capabilities limit what built-ins may reach (AllowNet); nil: no limit,
	// as with the default compiler's capabilities.
	Capabilities *ast.Capabilities
	// DistributedTracingOpts and HTTPRoundTripper configure http.send.
	DistributedTracingOpts tracing.Options
	HTTPRoundTripper       topdown.CustomizeRoundTripper
}

// builtinContext is the context every built-in that needs one gets, made
// on the first such call of an evaluation: it is what topdown gives, with
// a cancel that follows the evaluation's context.
func (st *state) builtinContext() *topdown.BuiltinContext {
	if st.bctx != nil {
		return st.bctx
	}
	o := &st.opts
	cancel := topdown.NewCancel()
	if st.ctx.Done() != nil {
		// Long built-ins (numbers.range, net.cidr_expand, ...) poll it.
		st.stopCancel = context.AfterFunc(st.ctx, cancel.Cancel)
	}
	seed := o.Seed
	if seed == nil {
		seed = rand.Reader
	}
	m := o.Metrics
	if m == nil {
		m = metrics.New()
	}
	st.bctxStore = topdown.BuiltinContext{
		Context:                     st.ctx,
		Metrics:                     m,
		Seed:                        seed,
		Time:                        ast.NewTerm(ast.Number(strconv.FormatInt(st.time.UnixNano(), 10))),
		Cancel:                      cancel,
		Runtime:                     o.Runtime,
		Cache:                       builtins.Cache{},
		InterQueryBuiltinCache:      o.InterQueryBuiltinCache,
		InterQueryBuiltinValueCache: o.InterQueryBuiltinValueCache,
		NDBuiltinCache:              o.NDBuiltinCache,
		PrintHook:                   o.PrintHook,
		DistributedTracingOpts:      o.DistributedTracingOpts,
		RoundTripper:                o.HTTPRoundTripper,
		Capabilities:                o.Capabilities,
		RequestMetadata:             map[string]any{},
	}
	st.bctx = &st.bctxStore
	return st.bctx
}
