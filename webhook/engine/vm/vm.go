// Package vm evaluates Rego compiled by OPA's planner: the intermediate
// representation (IR, package ir) that OPA's Wasm compiler also takes. It
// runs the plan's statements directly, on values of its own (see Value),
// runs the commonest built-ins itself and calls OPA's own implementation
// of every other one, so a decision costs a few lookups and calls instead
// of a walk of topdown's unification machinery.
//
// Compile checks every statement and built-in of a plan first: a plan it
// cannot run (a dynamic call, an unknown built-in) is an error, and the
// caller evaluates that query with topdown instead.
package vm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

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
}

type function struct {
	name   string
	index  int
	params []ir.Local
	ret    ir.Local
	locals int
	blocks [][]instr
	// memo: a function of input and data alone (a rule without arguments)
	// is evaluated once per evaluation, as OPA's Wasm runtime does.
	memo bool
}

// Statements this package substitutes for the IR's, resolved at compile time.
type (
	callFunc struct {
		ir.Location
		fn     *function
		args   []ir.Operand
		result ir.Local
	}
	callBuiltin struct {
		ir.Location
		fn     topdown.BuiltinFunc
		args   []ir.Operand
		result ir.Local
		loc    *ast.Location
		// bare: the built-in needs no context (ast.Builtin.CanSkipBctx);
		// it gets bctx, which holds only the call's place.
		bare bool
		// native runs the call on the evaluator's values when it can.
		native native
		bctx   topdown.BuiltinContext
	}
	makeConst struct {
		ir.Location
		value  Value
		target ir.Local
	}
	blockStmt struct {
		ir.Location
		blocks [][]instr
	}
	scanStmt struct {
		ir.Location
		source, key, value ir.Local
		body               []instr
	}
	notStmt struct {
		ir.Location
		body []instr
	}
	withStmt struct {
		ir.Location
		local ir.Local
		path  []Value
		value ir.Operand
		body  []instr
	}
)

// ErrUnsupported marks a plan that uses what this package does not run.
var ErrUnsupported = errors.New("unsupported by the IR evaluator")

// Compile resolves a planned policy's functions, built-ins and constants.
func Compile(pol *ir.Policy) (*Program, error) {
	c := &compiler{byName: map[string]*function{}, builtins: map[string]topdown.BuiltinFunc{}}
	if pol.Static != nil {
		for _, s := range pol.Static.Strings {
			c.strings = append(c.strings, s.Value)
		}
		for _, f := range pol.Static.Files {
			c.files = append(c.files, f.Value)
		}
		for _, b := range pol.Static.BuiltinFuncs {
			fn := topdown.GetBuiltin(b.Name)
			if fn == nil {
				return nil, fmt.Errorf("%w: built-in %s", ErrUnsupported, b.Name)
			}
			c.builtins[b.Name] = fn
		}
	}
	p := &Program{plans: map[string][][]instr{}, files: c.files, strings: c.strings}
	p.states.New = func() any { return newState() }
	if pol.Funcs != nil {
		for i, f := range pol.Funcs.Funcs {
			fn := &function{name: f.Name, index: i, params: f.Params, ret: f.Return, memo: len(f.Params) == 2}
			c.byName[f.Name] = fn
			p.funcs = append(p.funcs, fn)
		}
		for i, f := range pol.Funcs.Funcs {
			fn := p.funcs[i]
			c.max = int(fn.ret)
			for _, l := range fn.params {
				c.local(l)
			}
			for _, b := range f.Blocks {
				stmts, err := c.block(b)
				if err != nil {
					return nil, fmt.Errorf("function %s: %w", f.Name, err)
				}
				fn.blocks = append(fn.blocks, stmts)
			}
			fn.locals = c.max + 1
		}
	}
	if pol.Plans != nil {
		for _, pl := range pol.Plans.Plans {
			c.max = int(ir.Data)
			var blocks [][]instr
			for _, b := range pl.Blocks {
				stmts, err := c.block(b)
				if err != nil {
					return nil, fmt.Errorf("plan %s: %w", pl.Name, err)
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
			p.scanInputUses(fn.params[0], b)
		}
	}
	for _, blocks := range p.plans {
		for _, b := range blocks {
			p.scanInputUses(ir.Input, b)
		}
	}
	return p, nil
}

type compiler struct {
	strings  []Value
	files    []string
	byName   map[string]*function
	builtins map[string]topdown.BuiltinFunc
	max      int
}

func (c *compiler) local(l ir.Local) ir.Local {
	c.max = max(c.max, int(l))
	return l
}

func (c *compiler) operand(o ir.Operand) (ir.Operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		c.local(v)
		return o, nil
	case ir.StringIndex:
		if int(v) >= len(c.strings) {
			return o, fmt.Errorf("string constant %d out of range", v)
		}
		return o, nil
	case ir.Bool:
		return o, nil
	}
	return o, fmt.Errorf("%w: operand %T", ErrUnsupported, o.Value)
}

// uses sizes the frame for locals and checks the operands ops.
func (c *compiler) uses(locals []ir.Local, ops ...ir.Operand) error {
	for _, l := range locals {
		c.local(l)
	}
	for _, o := range ops {
		if _, err := c.operand(o); err != nil {
			return err
		}
	}
	return nil
}

func (c *compiler) operands(ops []ir.Operand) ([]ir.Operand, error) {
	out := make([]ir.Operand, len(ops))
	for i, o := range ops {
		var err error
		if out[i], err = c.operand(o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *compiler) location(l ir.Location) *ast.Location {
	loc := &ast.Location{Row: l.Row, Col: l.Col}
	if l.File >= 0 && l.File < len(c.files) {
		loc.File = c.files[l.File]
	}
	return loc
}

// block copies an IR block, substituting resolved statements and checking
// every operand.
func (c *compiler) block(b *ir.Block) ([]instr, error) {
	if b == nil {
		return nil, nil
	}
	out := make([]instr, 0, len(b.Stmts))
	for _, s := range b.Stmts {
		n, err := c.stmt(s)
		if err != nil {
			return nil, err
		}
		op := opOf(n)
		if op == opInvalid {
			return nil, fmt.Errorf("%w: statement %T", ErrUnsupported, n)
		}
		out = append(out, instr{op, n})
	}
	return out, nil
}

func (c *compiler) stmt(s ir.Stmt) (ir.Stmt, error) {
	var err error
	switch s := s.(type) {
	case *ir.CallStmt:
		args, err := c.operands(s.Args)
		if err != nil {
			return nil, err
		}
		c.local(s.Result)
		if fn, ok := c.byName[s.Func]; ok {
			if len(args) != len(fn.params) {
				return nil, fmt.Errorf("call of %s with %d arguments, want %d", fn.name, len(args), len(fn.params))
			}
			return &callFunc{Location: s.Location, fn: fn, args: args, result: s.Result}, nil
		}
		if fn, ok := c.builtins[s.Func]; ok {
			loc := c.location(s.Location)
			decl, ok := ast.BuiltinMap[s.Func]
			return &callBuiltin{
				Location: s.Location, fn: fn, args: args, result: s.Result, loc: loc,
				bare: ok && decl.CanSkipBctx, bctx: topdown.BuiltinContext{Location: loc},
				native: natives[s.Func],
			}, nil
		}
		return nil, fmt.Errorf("%w: call of unknown function %s", ErrUnsupported, s.Func)
	case *ir.MakeNumberRefStmt:
		if s.Index >= len(c.strings) {
			return nil, fmt.Errorf("number constant %d out of range", s.Index)
		}
		return &makeConst{Location: s.Location, value: ast.Number(c.strings[s.Index].(string)), target: c.local(s.Target)}, nil
	case *ir.MakeNumberIntStmt:
		return &makeConst{Location: s.Location, value: ast.Number(strconv.FormatInt(s.Value, 10)), target: c.local(s.Target)}, nil
	case *ir.AssignIntStmt:
		return &makeConst{Location: s.Location, value: ast.Number(strconv.FormatInt(s.Value, 10)), target: c.local(s.Target)}, nil
	case *ir.MakeNullStmt:
		return &makeConst{Location: s.Location, value: Null{}, target: c.local(s.Target)}, nil
	case *ir.BlockStmt:
		out := &blockStmt{Location: s.Location}
		for _, b := range s.Blocks {
			stmts, err := c.block(b)
			if err != nil {
				return nil, err
			}
			out.blocks = append(out.blocks, stmts)
		}
		return out, nil
	case *ir.ScanStmt:
		body, err := c.block(s.Block)
		return &scanStmt{Location: s.Location, source: c.local(s.Source), key: c.local(s.Key), value: c.local(s.Value), body: body}, err
	case *ir.NotStmt:
		body, err := c.block(s.Block)
		return &notStmt{Location: s.Location, body: body}, err
	case *ir.WithStmt:
		out := &withStmt{Location: s.Location, local: c.local(s.Local)}
		for _, i := range s.Path {
			if i < 0 || i >= len(c.strings) {
				return nil, fmt.Errorf("with path constant %d out of range", i)
			}
			out.path = append(out.path, c.strings[i])
		}
		if out.value, err = c.operand(s.Value); err != nil {
			return nil, err
		}
		out.body, err = c.block(s.Block)
		return out, err
	// The IR's own statements: their locals sized, their operands checked.
	case *ir.AssignVarStmt:
		return s, c.uses([]ir.Local{s.Target}, s.Source)
	case *ir.AssignVarOnceStmt:
		return s, c.uses([]ir.Local{s.Target}, s.Source)
	case *ir.DotStmt:
		return s, c.uses([]ir.Local{s.Target}, s.Source, s.Key)
	case *ir.LenStmt:
		return s, c.uses([]ir.Local{s.Target}, s.Source)
	case *ir.EqualStmt:
		return s, c.uses(nil, s.A, s.B)
	case *ir.NotEqualStmt:
		return s, c.uses(nil, s.A, s.B)
	case *ir.IsArrayStmt:
		return s, c.uses(nil, s.Source)
	case *ir.IsObjectStmt:
		return s, c.uses(nil, s.Source)
	case *ir.IsSetStmt:
		return s, c.uses(nil, s.Source)
	case *ir.ArrayAppendStmt:
		return s, c.uses([]ir.Local{s.Array}, s.Value)
	case *ir.SetAddStmt:
		return s, c.uses([]ir.Local{s.Set}, s.Value)
	case *ir.ObjectInsertStmt:
		return s, c.uses([]ir.Local{s.Object}, s.Key, s.Value)
	case *ir.ObjectInsertOnceStmt:
		return s, c.uses([]ir.Local{s.Object}, s.Key, s.Value)
	case *ir.ObjectMergeStmt:
		return s, c.uses([]ir.Local{s.A, s.B, s.Target})
	case *ir.IsDefinedStmt:
		return s, c.uses([]ir.Local{s.Source})
	case *ir.IsUndefinedStmt:
		return s, c.uses([]ir.Local{s.Source})
	case *ir.ResetLocalStmt:
		return s, c.uses([]ir.Local{s.Target})
	case *ir.MakeArrayStmt:
		return s, c.uses([]ir.Local{s.Target})
	case *ir.MakeObjectStmt:
		return s, c.uses([]ir.Local{s.Target})
	case *ir.MakeSetStmt:
		return s, c.uses([]ir.Local{s.Target})
	case *ir.ReturnLocalStmt:
		return s, c.uses([]ir.Local{s.Source})
	case *ir.ResultSetAddStmt:
		return s, c.uses([]ir.Local{s.Value})
	case *ir.BreakStmt, *ir.NopStmt:
		return s, nil
	}
	return nil, fmt.Errorf("%w: statement %T", ErrUnsupported, s)
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
// per result, binding the query's variables.
func (p *Program) Eval(ctx context.Context, plan string, input, data Value) (*Set, error) {
	blocks, ok := p.plans[plan]
	if !ok {
		return nil, fmt.Errorf("no plan %q", plan)
	}
	st := p.states.Get().(*state)
	defer func() {
		st.reset()
		p.states.Put(st)
	}()
	st.ctx, st.prog, st.results = ctx, p, &Set{}
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
	for _, b := range blocks {
		if _, err := st.exec(locals, b); err != nil {
			return nil, err
		}
	}
	return st.results, nil
}
