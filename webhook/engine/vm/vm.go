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
	"math/big"
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
		name   string
		fn     topdown.BuiltinFunc
		args   []ir.Operand
		result ir.Local
		loc    *ast.Location
		// bare: the built-in needs no context (ast.Builtin.CanSkipBctx);
		// it gets bctx, which holds only the call's place.
		bare bool
		// relation: every output is a result (walk); void: none is (print).
		relation, void   bool
		nondeterministic bool
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
		// every: the scan of an every, which ends at its first
		// counterexample (the body sets found), as topdown's does.
		every bool
		found ir.Local
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
	// assignOnce is AssignVarOnceStmt: a rule's value (rule: a rule body's,
	// else the function's result) in function fn (nil in a plan).
	assignOnce struct {
		ir.Location
		source ir.Operand
		target ir.Local
		fn     *function
		rule   bool
	}
	// callDynamic is CallDynamicStmt: a call of the function whose path
	// the operands give.
	callDynamic struct {
		ir.Location
		path   []ir.Operand
		args   []ir.Operand
		result ir.Local
	}
	// baseFirst runs the scan of a base document (base: the rest of a
	// block) before the blocks evaluating the rules beside it (virtual):
	// topdown enumerates data.pkg[k] base keys first, the planner the
	// rules first.
	baseFirst struct {
		ir.Location
		virtual *blockStmt
		base    []instr
	}
	// insertOnce is ObjectInsertOnceStmt; ground: it inserts the value of
	// a rule whose head names its key (p["a"] := 1), which topdown holds a
	// complete rule of its own (data.t.p.a).
	insertOnce struct {
		*ir.ObjectInsertOnceStmt
		fn *function
		// rule: it inserts a rule's value into the function's object;
		// named: at the key the rule's head names; ground: so do all the
		// function's rules.
		rule, named, ground bool
	}
	// dotData is a DotStmt on the data document (data.a[2]): as topdown
	// reads the document from its store, a number key also finds the key
	// that is its text ("2").
	dotData struct {
		*ir.DotStmt
	}
	// undefined is a statement that is always undefined.
	undefined struct {
		ir.Location
	}
)

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
	c := &compiler{byName: map[string]*function{}, builtins: map[string]topdown.BuiltinFunc{}}
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
			if loc, ok := unsetRead(f.Blocks, f.Params...); ok {
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
			if loc, ok := unsetRead(pl.Blocks, ir.Input, ir.Data); ok {
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

// block copies an IR block, substituting resolved statements and checking
// every operand.
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
			return append(out, instr{opBaseFirst, &baseFirst{Location: bs.Location, virtual: virtual.(*blockStmt), base: base}}), nil
		}
		n, err := c.stmt(s)
		if err != nil {
			return nil, err
		}
		if scan, ok := n.(*scanStmt); ok && i+1 < len(b.Stmts) {
			scan.found, scan.every = everyFound(s.(*ir.ScanStmt), b.Stmts[i+1])
		}
		if l, ok := writes(n); ok {
			// a local made constant, then reused for another value
			delete(c.consts, l)
		}
		op := opOf(n)
		if op == opInvalid {
			return nil, c.unsupported(ir.Location{}, fmt.Sprintf("a plan statement %T", n))
		}
		out = append(out, instr{op, n})
	}
	return out, nil
}

// everyFound says whether a scan is that of an every, and which local its
// body sets on a counterexample: the planner ends the body with found =
// true, and has the statement after the scan require found undefined.
func everyFound(scan *ir.ScanStmt, next ir.Stmt) (ir.Local, bool) {
	if scan.Block == nil || len(scan.Block.Stmts) == 0 {
		return 0, false
	}
	set, ok := scan.Block.Stmts[len(scan.Block.Stmts)-1].(*ir.AssignVarStmt)
	check, ok2 := next.(*ir.IsUndefinedStmt)
	if !ok || !ok2 || set.Target != check.Source {
		return 0, false
	}
	if b, ok := set.Source.Value.(ir.Bool); !ok || !bool(b) {
		return 0, false
	}
	return set.Target, true
}

// writes is the local a statement sets to a value that is not a constant.
func writes(s ir.Stmt) (ir.Local, bool) {
	switch s := s.(type) {
	case *ir.AssignVarStmt:
		return s.Target, true
	case *assignOnce:
		return s.target, true
	case *ir.DotStmt:
		return s.Target, true
	case *dotData:
		return s.Target, true
	case *callFunc:
		return s.result, true
	case *callBuiltin:
		return s.result, true
	case *callDynamic:
		return s.result, true
	case *ir.LenStmt:
		return s.Target, true
	case *ir.MakeArrayStmt:
		return s.Target, true
	case *ir.MakeObjectStmt:
		return s.Target, true
	case *ir.MakeSetStmt:
		return s.Target, true
	case *ir.ObjectMergeStmt:
		return s.Target, true
	}
	return 0, false
}

// baseAfterVirtual says whether the statements following a block statement
// enumerate a base document beside the rules the block evaluated: the
// planner makes a set of the rules' keys, then scans the base document
// skipping them.
func baseAfterVirtual(rest []ir.Stmt) bool {
	if len(rest) < 2 {
		return false
	}
	keys, ok := rest[0].(*ir.MakeSetStmt)
	scan, ok2 := rest[len(rest)-1].(*ir.ScanStmt)
	if !ok || !ok2 || scan.Block == nil {
		return false
	}
	for _, s := range scan.Block.Stmts {
		if n, ok := s.(*ir.NotStmt); ok && n.Block != nil && len(n.Block.Stmts) == 1 {
			if d, ok := n.Block.Stmts[0].(*ir.DotStmt); ok {
				if l, ok := d.Source.Value.(ir.Local); ok && l == keys.Target {
					return true
				}
			}
		}
	}
	return false
}

func (c *compiler) stmt(s ir.Stmt) (ir.Stmt, error) {
	var err error
	switch s := s.(type) {
	case *ir.CallStmt:
		args, err := c.operands(s.Location, s.Args)
		if err != nil {
			return nil, err
		}
		c.local(s.Result)
		if fn, ok := c.byName[s.Func]; ok {
			if len(args) >= 2 && len(args) < len(fn.params) {
				// A function's rules as a document (some k, v in
				// data.pkg): functions are no part of the data
				// document, as in topdown.
				return &undefined{Location: s.Location}, nil
			}
			if len(args) != len(fn.params) {
				return nil, c.unsupported(s.Location, fmt.Sprintf("a call of %s with %d arguments (it takes %d)", fn.rule, len(args), len(fn.params)))
			}
			return &callFunc{Location: s.Location, fn: fn, args: args, result: s.Result}, nil
		}
		if fn, ok := c.builtins[s.Func]; ok {
			loc := c.location(s.Location)
			decl, ok := ast.BuiltinMap[s.Func]
			if !ok || fn == nil {
				// declared to the compiler, but no built-in of OPA's
				return nil, c.unsupported(s.Location, "the custom built-in "+s.Func)
			}
			return &callBuiltin{
				Location: s.Location, name: s.Func, fn: fn, args: args, result: s.Result, loc: loc,
				bare: decl.CanSkipBctx, bctx: topdown.BuiltinContext{Location: loc},
				relation: decl.Relation, void: decl.Decl.Result() == nil, nondeterministic: decl.Nondeterministic,
				native: natives[s.Func],
			}, nil
		}
		return nil, c.unsupported(s.Location, "a call of "+planned(s.Func)+", which the plan does not define")
	case *ir.MakeNumberRefStmt:
		if s.Index < 0 || s.Index >= len(c.strings) {
			return nil, c.unsupported(s.Location, fmt.Sprintf("a plan's number constant %d (of %d)", s.Index, len(c.strings)))
		}
		// A number as Rego writes it (1, -0.5, .0, 1e400): one OPA's
		// comparisons can parse.
		str, _ := c.strings[s.Index].(string)
		_, okf := new(big.Float).SetString(str)
		_, okr := new(big.Rat).SetString(str)
		if !okf || !okr || strings.ContainsAny(str, "/xXpP_") {
			return nil, c.unsupported(s.Location, fmt.Sprintf("the number %q", str))
		}
		c.consts[s.Target] = true
		return &makeConst{Location: s.Location, value: ast.Number(str), target: c.local(s.Target)}, nil
	case *ir.MakeNumberIntStmt:
		c.consts[s.Target] = true
		return &makeConst{Location: s.Location, value: ast.Number(strconv.FormatInt(s.Value, 10)), target: c.local(s.Target)}, nil
	case *ir.AssignIntStmt:
		return &makeConst{Location: s.Location, value: ast.Number(strconv.FormatInt(s.Value, 10)), target: c.local(s.Target)}, nil
	case *ir.MakeNullStmt:
		c.consts[s.Target] = true
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
				return nil, c.unsupported(s.Location, fmt.Sprintf("a plan's string constant %d (of %d)", i, len(c.strings)))
			}
			out.path = append(out.path, c.strings[i])
		}
		if out.value, err = c.operand(s.Location, s.Value); err != nil {
			return nil, err
		}
		out.body, err = c.block(s.Block)
		return out, err
	case *ir.AssignVarOnceStmt:
		if _, err := c.operand(s.Location, s.Source); err != nil {
			return nil, err
		}
		out := &assignOnce{Location: s.Location, source: s.Source, target: c.local(s.Target), fn: c.fn}
		out.rule = c.fn != nil && s.Target != c.fn.ret
		return out, nil
	// The IR's own statements: their locals sized, their operands checked.
	case *ir.AssignVarStmt:
		return s, c.uses(s.Location, []ir.Local{s.Target}, s.Source)
	case *ir.DotStmt:
		if err := c.uses(s.Location, []ir.Local{s.Target}, s.Source, s.Key); err != nil {
			return nil, err
		}
		if l, ok := s.Source.Value.(ir.Local); ok && c.dataRefs[l] {
			c.dataRefs[s.Target] = true
			return &dotData{s}, nil
		}
		return s, nil
	case *ir.LenStmt:
		return s, c.uses(s.Location, []ir.Local{s.Target}, s.Source)
	case *ir.EqualStmt:
		return s, c.uses(s.Location, nil, s.A, s.B)
	case *ir.NotEqualStmt:
		return s, c.uses(s.Location, nil, s.A, s.B)
	case *ir.IsArrayStmt:
		return s, c.uses(s.Location, nil, s.Source)
	case *ir.IsObjectStmt:
		return s, c.uses(s.Location, nil, s.Source)
	case *ir.IsSetStmt:
		return s, c.uses(s.Location, nil, s.Source)
	case *ir.ArrayAppendStmt:
		return s, c.uses(s.Location, []ir.Local{s.Array}, s.Value)
	case *ir.SetAddStmt:
		return s, c.uses(s.Location, []ir.Local{s.Set}, s.Value)
	case *ir.ObjectInsertStmt:
		return s, c.uses(s.Location, []ir.Local{s.Object}, s.Key, s.Value)
	case *ir.ObjectInsertOnceStmt:
		if err := c.uses(s.Location, []ir.Local{s.Object}, s.Key, s.Value); err != nil {
			return nil, err
		}
		out := &insertOnce{ObjectInsertOnceStmt: s, fn: c.fn}
		if c.fn != nil && s.Object == c.fn.ret {
			out.rule = true
			switch k := s.Key.Value.(type) {
			case ir.StringIndex, ir.Bool:
				out.named = true
			case ir.Local:
				out.named = c.consts[k]
			}
			out.ground = out.named
			c.inserts = append(c.inserts, out)
		}
		return out, nil
	case *ir.ObjectMergeStmt:
		return s, c.uses(s.Location, []ir.Local{s.A, s.B, s.Target})
	case *ir.IsDefinedStmt:
		return s, c.uses(s.Location, []ir.Local{s.Source})
	case *ir.IsUndefinedStmt:
		return s, c.uses(s.Location, []ir.Local{s.Source})
	case *ir.ResetLocalStmt:
		return s, c.uses(s.Location, []ir.Local{s.Target})
	case *ir.MakeArrayStmt:
		return s, c.uses(s.Location, []ir.Local{s.Target})
	case *ir.MakeObjectStmt:
		return s, c.uses(s.Location, []ir.Local{s.Target})
	case *ir.MakeSetStmt:
		return s, c.uses(s.Location, []ir.Local{s.Target})
	case *ir.ReturnLocalStmt:
		return s, c.uses(s.Location, []ir.Local{s.Source})
	case *ir.ResultSetAddStmt:
		return s, c.uses(s.Location, []ir.Local{s.Value})
	case *ir.BreakStmt, *ir.NopStmt:
		return s, nil
	case *ir.CallDynamicStmt:
		path, err := c.operands(s.Location, s.Path)
		if err != nil {
			return nil, err
		}
		out := &callDynamic{Location: s.Location, path: path, result: c.local(s.Result)}
		for _, a := range s.Args {
			out.args = append(out.args, ir.Operand{Value: c.local(a)})
		}
		return out, nil
	}
	return nil, c.unsupported(ir.Location{}, fmt.Sprintf("the plan statement %T", s))
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
	for _, b := range blocks {
		if _, err = st.exec(locals, b); err != nil {
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
