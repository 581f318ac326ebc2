// Package vm evaluates Rego compiled by OPA's planner: the intermediate
// representation (IR, package ir) that OPA's Wasm compiler also takes. It
// runs the plan's statements directly, on values of its own (see Value),
// runs the commonest built-ins itself and calls OPA's own implementation
// of every other one, so a decision costs a few lookups and calls instead
// of a walk of topdown's unification machinery.
//
// It holds to topdown's semantics: sets and objects iterate in OPA's order
// (ast.Compare's), built-ins get the context topdown gives them (EvalOptions
// supplies what the caller would pass rego), their errors are undefined or,
// in strict mode, the evaluation's, conflicts are reported as topdown reports
// them, and an evaluation ends at its context's deadline. A panic, in a
// built-in or here, is an error of the evaluation (PanicError).
//
// Compile checks every statement and built-in of a plan first: a plan it
// cannot run (a built-in that is none of OPA's) is an ErrUnsupported error
// naming the place in the policy, and the caller evaluates that query with
// topdown instead.
package vm

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Statement results of exec: a block ran to its end (completed), a function
// returned (returned), or a block was left early; n >= 0 means "leave n more
// enclosing blocks" (an undefined statement leaves its own block: 0).
const (
	completed = -1
	returned  = -2
)

// Program is a compiled plan set, safe for concurrent evaluation.
type Program struct {
	plans   map[string][][]instr
	funcs   []*function
	files   []string
	strings []Value
	// locals a plan's frame needs.
	planLocals int
	states     sync.Pool
	// the input's top-level keys the program reads, or all of them
	inputKeys map[string]bool
	inputAll  bool
	// byPath finds a function by its path (g0, pkg, ..., rule), joined
	// with NULs, for dynamic calls.
	byPath map[string]*function
}

type function struct {
	name  string
	index int
	// rule is the document or function the rules define, as a policy names
	// it (data.pkg.rule); function: the rules take arguments.
	rule     string
	ref      ast.Ref
	function bool
	params   []ir.Local
	ret      ir.Local
	locals   int
	blocks   [][]instr
	// memo: a function of input and data alone (a rule without arguments)
	// is evaluated once per evaluation, as OPA's Wasm runtime does.
	memo bool
}

// ErrUnsupported marks a plan that uses what this package does not run.
var ErrUnsupported = errors.New("unsupported by the IR evaluator")

// unsupportedError says what of a policy the evaluator does not run, and
// where: in the policy author's terms, never the plan's.
type unsupportedError struct {
	where, what string
}

func (e *unsupportedError) Error() string {
	return e.where + ": " + e.what + ": " + ErrUnsupported.Error()
}

func (e *unsupportedError) Is(target error) bool { return target == ErrUnsupported }

// Compile resolves a planned policy's functions, built-ins and constants.
// Any plan it cannot run is an ErrUnsupported error.
func Compile(pol *ir.Policy) (prog *Program, err error) {
	defer func() {
		// A malformed plan is one this package does not run either.
		if r := recover(); r != nil {
			prog, err = nil, &unsupportedError{where: "plan", what: fmt.Sprintf("a plan that fails to compile (%v)", r)}
		}
	}()
	c := &compiler{rows: statements, byName: map[string]*function{}, builtins: map[string]topdown.BuiltinFunc{}}
	if pol.Static != nil {
		for _, s := range pol.Static.Strings {
			c.strings = append(c.strings, s.Value)
		}
		for _, f := range pol.Static.Files {
			c.files = append(c.files, f.Value)
		}
		for _, b := range pol.Static.BuiltinFuncs {
			c.builtins[b.Name] = topdown.GetBuiltin(b.Name)
		}
	}
	p := &Program{plans: map[string][][]instr{}, files: c.files, strings: c.strings, byPath: map[string]*function{}}
	p.states.New = func() any { return newState() }
	if pol.Funcs != nil {
		// Each generation of functions (a with statement replacing rules
		// starts one) passes the same leading arguments: input, data and
		// the with's variables. Functions taking more are Rego functions.
		lead := map[string]int{}
		for _, f := range pol.Funcs.Funcs {
			if f == nil {
				return nil, &unsupportedError{where: "plan", what: "a function without a body"}
			}
			gen := genOf(f)
			if n, ok := lead[gen]; !ok || len(f.Params) < n {
				lead[gen] = len(f.Params)
			}
		}
		lead["g0"] = 2
		for i, f := range pol.Funcs.Funcs {
			ref := ruleRef(f)
			fn := &function{
				name: f.Name, index: i, rule: ref.String(), ref: ref, function: len(f.Params) > lead[genOf(f)],
				params: f.Params, ret: f.Return, memo: len(f.Params) == 2,
			}
			c.byName[f.Name] = fn
			p.funcs = append(p.funcs, fn)
			p.byPath[strings.Join(f.Path, "\x00")] = fn
		}
		for i, f := range pol.Funcs.Funcs {
			fn := p.funcs[i]
			c.fn = fn
			if loc, ok := unsetRead(c.rows, f.Blocks, f.Params...); ok {
				return nil, c.unsupported(loc, c.construct(loc)+" reads a value its plan never sets")
			}
			c.consts = map[ir.Local]bool{}
			c.dataRefs = map[ir.Local]bool{}
			if len(fn.params) > 1 {
				c.dataRefs[fn.params[1]] = true
			}
			c.max = int(c.local(fn.ret))
			for _, l := range fn.params {
				c.local(l)
			}
			c.inserts = nil
			for _, b := range f.Blocks {
				stmts, err := c.block(b)
				if err != nil {
					return nil, err
				}
				fn.blocks = append(fn.blocks, stmts)
			}
			fn.locals = c.max + 1
			// One rule with a variable in its key makes them all one
			// partial object for topdown, not complete rules.
			for _, in := range c.inserts {
				if !in.ground {
					for _, in := range c.inserts {
						in.ground = false
					}
					break
				}
			}
		}
	}
	c.fn = nil
	if pol.Plans != nil {
		for _, pl := range pol.Plans.Plans {
			if pl == nil {
				return nil, &unsupportedError{where: "plan", what: "a plan without a body"}
			}
			if loc, ok := unsetRead(c.rows, pl.Blocks, ir.Input, ir.Data); ok {
				return nil, c.unsupported(loc, c.construct(loc)+" reads a value its plan never sets")
			}
			c.max = int(ir.Data)
			c.dataRefs = map[ir.Local]bool{ir.Data: true}
			c.consts = map[ir.Local]bool{}
			var blocks [][]instr
			for _, b := range pl.Blocks {
				stmts, err := c.block(b)
				if err != nil {
					return nil, err
				}
				blocks = append(blocks, stmts)
			}
			p.plans[pl.Name] = blocks
			p.planLocals = max(p.planLocals, c.max+1)
		}
	}
	p.inputKeys = map[string]bool{}
	for _, fn := range p.funcs {
		if len(fn.params) == 0 {
			p.inputAll = true
			break
		}
		for _, b := range fn.blocks {
			(&inputUses{p, fn.params[0]}).block(b)
		}
	}
	for _, blocks := range p.plans {
		for _, b := range blocks {
			(&inputUses{p, ir.Input}).block(b)
		}
	}
	return p, nil
}

// genOf is the generation a planned function belongs to (g0, g1, ...).
func genOf(f *ir.Func) string {
	if len(f.Path) > 0 {
		return f.Path[0]
	}
	gen, _, _ := strings.Cut(f.Name, ".")
	return gen
}

// planned is a planner's function name as Rego names it: g0.data.pkg.rule
// is data.pkg.rule.
func planned(name string) string {
	gen, rest, ok := strings.Cut(name, ".")
	if ok && len(gen) > 1 && gen[0] == 'g' && strings.Trim(gen[1:], "0123456789") == "" {
		return rest
	}
	return name
}

// ruleRef is the reference a function's rules define: the planner names
// the function of data.pkg.rule g0.data.pkg.rule, its path g0, pkg, rule.
func ruleRef(f *ir.Func) ast.Ref {
	if len(f.Path) < 2 {
		ref, err := ast.ParseRef(planned(f.Name))
		if err != nil {
			return ast.Ref{ast.StringTerm(planned(f.Name))}
		}
		return ref
	}
	ref := ast.Ref{ast.DefaultRootDocument}
	for _, p := range f.Path[1:] {
		ref = append(ref, ast.StringTerm(p))
	}
	return ref
}

type compiler struct {
	// rows is the statement table (statements).
	rows     rows
	strings  []Value
	files    []string
	byName   map[string]*function
	builtins map[string]topdown.BuiltinFunc
	max      int
	// fn is the function being compiled (nil: a plan).
	fn *function
	// consts are the locals a constant is made in (the keys of rule heads).
	consts map[ir.Local]bool
	// inserts are the function's insertions of its rules' values.
	inserts []*insertOnce
	// dataRefs are the locals holding the data document or a value looked
	// up in it by a chain of dots (data.a.b).
	dataRefs map[ir.Local]bool
}

// unsupported is the error for what of the policy at loc is not run.
func (c *compiler) unsupported(loc ir.Location, what string) error {
	where := "query"
	if c.fn != nil {
		where = c.fn.rule
	}
	if l := c.location(loc); l.File != "" && l.Row > 0 {
		where = l.File + ":" + strconv.Itoa(l.Row)
	} else if l.Row > 0 {
		where += ":" + strconv.Itoa(l.Row)
	}
	return &unsupportedError{where: where, what: what}
}

// construct is the Rego a plan's statement comes from, as the policy
// writes it.
func (c *compiler) construct(loc ir.Location) string {
	if loc.Text != nil {
		return strconv.Quote(strings.Join(strings.Fields(string(loc.Text)), " "))
	}
	return "a statement"
}

func (c *compiler) local(l ir.Local) ir.Local {
	if l < 0 {
		panic(fmt.Sprintf("local %d", l))
	}
	c.max = max(c.max, int(l))
	return l
}

// target sizes the frame for a local a statement sets to a value it
// computes: the local is no constant (c.consts) from then on.
func (c *compiler) target(l ir.Local) ir.Local {
	c.local(l)
	delete(c.consts, l)
	return l
}

// constant sizes the frame for a local a statement sets to a constant.
func (c *compiler) constant(l ir.Local) ir.Local {
	c.consts[l] = true
	return c.local(l)
}

func (c *compiler) operand(loc ir.Location, o ir.Operand) (ir.Operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		c.local(v)
		return o, nil
	case ir.StringIndex:
		if v < 0 || int(v) >= len(c.strings) {
			return o, c.unsupported(loc, fmt.Sprintf("a plan's string constant %d (of %d)", v, len(c.strings)))
		}
		return o, nil
	case ir.Bool:
		return o, nil
	}
	return o, c.unsupported(loc, fmt.Sprintf("an operand of type %T", o.Value))
}

// uses sizes the frame for locals and checks the operands ops.
func (c *compiler) uses(loc ir.Location, locals []ir.Local, ops ...ir.Operand) error {
	for _, l := range locals {
		c.local(l)
	}
	for _, o := range ops {
		if _, err := c.operand(loc, o); err != nil {
			return err
		}
	}
	return nil
}

func (c *compiler) operands(loc ir.Location, ops []ir.Operand) ([]ir.Operand, error) {
	out := make([]ir.Operand, len(ops))
	for i, o := range ops {
		var err error
		if out[i], err = c.operand(loc, o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *compiler) location(l ir.Location) *ast.Location {
	loc := &ast.Location{Row: l.Row, Col: l.Col, Text: []byte(l.Text)}
	if l.File >= 0 && l.File < len(c.files) {
		loc.File = c.files[l.File]
	}
	return loc
}

// block compiles an IR block by its statements' rows. Two are compiled with
// the statements after them: the scan of an every (see everyFound), and a
// block statement the scan of a base document follows (see baseFirst).
func (c *compiler) block(b *ir.Block) ([]instr, error) {
	if b == nil {
		return nil, nil
	}
	out := make([]instr, 0, len(b.Stmts))
	for i, s := range b.Stmts {
		if bs, ok := s.(*ir.BlockStmt); ok && baseAfterVirtual(b.Stmts[i+1:]) {
			virtual, err := c.stmt(bs)
			if err != nil {
				return nil, err
			}
			base, err := c.block(&ir.Block{Stmts: b.Stmts[i+1:]})
			if err != nil {
				return nil, err
			}
			return append(out, &baseFirst{virtual: virtual.(*blockStmt), base: base}), nil
		}
		n, err := c.stmt(s)
		if err != nil {
			return nil, err
		}
		if scan, ok := n.(*scanStmt); ok && i+1 < len(b.Stmts) {
			scan.found, scan.every = everyFound(s.(*ir.ScanStmt), b.Stmts[i+1])
		}
		out = append(out, n)
	}
	return out, nil
}

// Plans names the program's plans.
func (p *Program) Plans() []string {
	out := make([]string, 0, len(p.plans))
	for name := range p.plans {
		out = append(out, name)
	}
	return out
}

// Eval runs a plan on input and data and returns its result set: one object
// per result, binding the query's variables. It is EvalWith with the
// default options.
func (p *Program) Eval(ctx context.Context, plan string, input, data Value) (*Set, error) {
	return p.EvalWith(ctx, plan, input, data, EvalOptions{})
}

// EvalWith runs a plan as Eval does, giving the built-ins what opts
// holds. The evaluation ends with topdown's cancellation error
// (topdown.CancelErr) once ctx is done; a panic, in a built-in or
// elsewhere, is returned as a *PanicError.
func (p *Program) EvalWith(ctx context.Context, plan string, input, data Value, opts EvalOptions) (*Set, error) {
	blocks, ok := p.plans[plan]
	if !ok {
		return nil, fmt.Errorf("no plan %q", plan)
	}
	st := p.states.Get().(*state)
	rs, err := st.run(ctx, p, blocks, input, data, &opts)
	st.reset()
	p.states.Put(st)
	return rs, err
}

func (st *state) run(ctx context.Context, p *Program, blocks [][]instr, input, data Value, opts *EvalOptions) (rs *Set, err error) {
	defer func() {
		if r := recover(); r != nil {
			rs, err = nil, st.panicked(r)
		}
	}()
	st.ctx, st.prog, st.opts, st.results = ctx, p, *opts, &Set{}
	if st.time = opts.Time; st.time.IsZero() {
		st.time = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return nil, cancelled(err)
	}
	st.pushMemo()
	if cap(st.frame) < p.planLocals {
		st.frame = make([]Value, p.planLocals)
	}
	locals := st.frame[:p.planLocals]
	if input != nil {
		locals[ir.Input] = input
	}
	if data != nil {
		locals[ir.Data] = data
	}
	st.locals = locals
	for _, b := range blocks {
		if _, err = st.exec(b); err != nil {
			break
		}
	}
	// As topdown: in strict mode, the first built-in error is the
	// evaluation's, whatever else happened.
	if st.opts.StrictBuiltinErrors && st.builtinErr != nil {
		return nil, st.builtinErr
	}
	if cf, ok := err.(*conflictFound); ok {
		// not in a function: nothing to list
		err = conflict(st.loc(cf.loc), "complete rules must not produce multiple outputs")
	}
	if err != nil {
		return nil, err
	}
	return st.results, nil
}

// PanicError is a panic recovered from an evaluation.
type PanicError struct {
	// Builtin is the built-in that panicked, if one did; Location is the
	// place of its call.
	Builtin  string
	Location *ast.Location
	Value    any
	Stack    []byte
}

func (e *PanicError) Error() string {
	if e.Builtin != "" {
		return fmt.Sprintf("evaluation panicked in built-in %s at %v: %v", e.Builtin, e.Location, e.Value)
	}
	return fmt.Sprintf("evaluation panicked: %v", e.Value)
}

func (st *state) panicked(r any) error {
	e := &PanicError{Value: r, Stack: debug.Stack()}
	if c := st.calling; c != nil {
		e.Builtin, e.Location = c.name, c.loc
	}
	return e
}
