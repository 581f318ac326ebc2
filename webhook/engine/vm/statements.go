package vm

import (
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// statements is the statement table: everything the evaluator does with
// each kind of IR statement, in one place per kind, keyed by its type.
//
// A row, kind[S], handles the IR statements of type S. Its compile checks a
// statement (its operands, and the locals it uses, which size the frame)
// and returns the instr that runs it; its flow tells unsetRead what the
// statement reads and sets. An instr is a type of this file whose exec
// method is the statement's semantics and whose useInput method tells
// InputKeys how it uses the input document.
//
// To add a statement: write its section below (its row, and the instr type
// it compiles to with its two methods, unless an existing one fits) and
// list the row here. Nothing else in the package names statement types
// but compiler.block, which compiles two patterns of statements together.
var statements = table(
	assignVarRow, assignVarOnceRow, dotRow, equalRow, notEqualRow,
	callRow, callDynamicRow,
	makeNumberRefRow, makeNumberIntRow, assignIntRow, makeNullRow,
	resetLocalRow, isDefinedRow, isUndefinedRow,
	returnLocalRow, breakRow, nopRow,
	blockRow, scanRow, notRow, withRow,
	makeArrayRow, makeObjectRow, makeSetRow, arrayAppendRow, setAddRow,
	objectInsertRow, objectInsertOnceRow, objectMergeRow,
	lenRow, isArrayRow, isObjectRow, isSetRow,
	resultSetAddRow,
)

// rows is a statement table as the compiler and the flow analysis read it:
// they get it as a field, so that the rows, which compile and walk nested
// blocks through it, do not refer to the table they are in.
type rows = map[reflect.Type]row

// kind is the row of the IR statements of type S.
type kind[S ir.Stmt] struct {
	// compile checks a statement and returns what exec runs for it.
	compile func(c *compiler, s S) (instr, error)
	// flow, for statements that read or set locals or hold blocks, tells
	// unsetRead what they do, in the order they do it.
	flow func(s S, f *flow)
}

// instr is a compiled statement.
type instr interface {
	// exec runs the statement on the running frame, st.locals. It returns
	// completed to go on with the next statement, or what its block
	// returns: returned (st.ret holds the value), or the number of
	// enclosing blocks to leave after the statement's own (0: the
	// statement is undefined).
	//
	// Every statement runs by this call through the interface. The frame
	// is the state's rather than an argument: with fewer registers to pass
	// and restore, the call costs a few instructions more than a switch's
	// case, where an argument frame cost a dozen.
	exec(st *state) (int, error)
	// useInput tells u how the statement uses the input document.
	useInput(u *inputUses)
}

// row is a kind of any statement type, as the table holds it.
type row interface {
	stmtType() reflect.Type
	compileStmt(c *compiler, s ir.Stmt) (instr, error)
	flowStmt(s ir.Stmt, f *flow)
}

func (k kind[S]) stmtType() reflect.Type { return reflect.TypeFor[S]() }

func (k kind[S]) compileStmt(c *compiler, s ir.Stmt) (instr, error) { return k.compile(c, s.(S)) }

func (k kind[S]) flowStmt(s ir.Stmt, f *flow) {
	if k.flow != nil {
		k.flow(s.(S), f)
	}
}

func table(all ...row) rows {
	out := make(rows, len(all))
	for _, r := range all {
		if _, dup := out[r.stmtType()]; dup {
			panic(fmt.Sprintf("vm: two rows for %v", r.stmtType()))
		}
		out[r.stmtType()] = r
	}
	return out
}

// stmt compiles one statement by its row.
func (c *compiler) stmt(s ir.Stmt) (instr, error) {
	r, ok := c.rows[reflect.TypeOf(s)]
	if !ok {
		return nil, c.unsupported(ir.Location{}, fmt.Sprintf("the plan statement %T", s))
	}
	return r.compileStmt(c, s)
}

// AssignVarStmt: target = source.

var assignVarRow = kind[*ir.AssignVarStmt]{
	compile: func(c *compiler, s *ir.AssignVarStmt) (instr, error) {
		c.target(s.Target)
		return assignVar{s}, c.uses(s.Location, nil, s.Source)
	},
	flow: func(s *ir.AssignVarStmt, f *flow) {
		f.reads(s.Location, s.Source)
		f.sets(s.Target)
	},
}

type assignVar struct{ *ir.AssignVarStmt }

func (s assignVar) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.Target] = st.read(locals, s.Source)
	return completed, nil
}

func (s assignVar) useInput(u *inputUses) {
	if u.isIn(s.Source) || s.Target == u.in {
		u.all()
	}
}

// AssignVarOnceStmt: target = source, unless target holds another value: a
// rule's value (rule: a rule body's, else the function's result) in
// function fn (nil in a plan), which conflicts with another.

var assignVarOnceRow = kind[*ir.AssignVarOnceStmt]{
	compile: func(c *compiler, s *ir.AssignVarOnceStmt) (instr, error) {
		if _, err := c.operand(s.Location, s.Source); err != nil {
			return nil, err
		}
		return &assignOnce{
			Location: s.Location, source: s.Source, target: c.target(s.Target), fn: c.fn,
			rule: c.fn != nil && s.Target != c.fn.ret,
		}, nil
	},
	flow: func(s *ir.AssignVarOnceStmt, f *flow) {
		f.reads(s.Location, s.Source)
		f.sets(s.Target)
		f.shares(s.Target)
	},
}

type assignOnce struct {
	ir.Location
	source ir.Operand
	target ir.Local
	fn     *function
	rule   bool
}

func (s *assignOnce) exec(st *state) (int, error) {
	locals := st.locals
	v := st.read(locals, s.source)
	if v == nil {
		return 0, nil
	}
	if c := st.collect; c != nil && c.fn == s.fn && c.key == nil && !c.inserts {
		if s.rule {
			c.add(v, s.Location)
		}
		if locals[s.target] == nil {
			locals[s.target] = v
		}
		return completed, nil
	}
	if cur := locals[s.target]; cur != nil {
		if !equal(cur, v) {
			return 0, &conflictFound{fn: s.fn, loc: s.Location}
		}
		return completed, nil
	}
	locals[s.target] = v
	return completed, nil
}

func (s *assignOnce) useInput(u *inputUses) {
	if u.isIn(s.source) || s.target == u.in {
		u.all()
	}
}

// DotStmt: target = source[key]. On the data document (data.a[2]) it is a
// dotData: as topdown reads the document from its store, a number key also
// finds the key that is its text ("2").

var dotRow = kind[*ir.DotStmt]{
	compile: func(c *compiler, s *ir.DotStmt) (instr, error) {
		c.target(s.Target)
		if err := c.uses(s.Location, nil, s.Source, s.Key); err != nil {
			return nil, err
		}
		if l, ok := s.Source.Value.(ir.Local); ok && c.dataRefs[l] {
			c.dataRefs[s.Target] = true
			return dotData{s}, nil
		}
		return dotStmt{s}, nil
	},
	flow: func(s *ir.DotStmt, f *flow) {
		f.reads(s.Location, s.Source, s.Key)
		f.sets(s.Target)
	},
}

type dotStmt struct{ *ir.DotStmt }

func (s dotStmt) exec(st *state) (int, error) {
	locals := st.locals
	v := dot(st.read(locals, s.Source), st.read(locals, s.Key))
	if v == nil {
		return 0, nil
	}
	locals[s.Target] = v
	return completed, nil
}

func (s dotStmt) useInput(u *inputUses) {
	if u.isIn(s.Source) {
		k, ok := s.Key.Value.(ir.StringIndex)
		if !ok {
			u.all()
			return
		}
		u.key(k)
	}
	if u.isIn(s.Key) {
		u.all()
	}
}

type dotData struct{ *ir.DotStmt }

func (s dotData) exec(st *state) (int, error) {
	locals := st.locals
	src, key := st.read(locals, s.Source), st.read(locals, s.Key)
	v := dot(src, key)
	if n, ok := key.(ast.Number); ok && v == nil {
		if o, ok := src.(*Object); ok {
			v = o.GetString(string(n))
		}
	}
	if v == nil {
		return 0, nil
	}
	locals[s.Target] = v
	return completed, nil
}

func (s dotData) useInput(u *inputUses) {
	if u.isIn(s.Key) {
		u.all()
	}
}

// EqualStmt and NotEqualStmt: a == b, a != b, both defined.

var equalRow = kind[*ir.EqualStmt]{
	compile: func(c *compiler, s *ir.EqualStmt) (instr, error) {
		return equalStmt{s}, c.uses(s.Location, nil, s.A, s.B)
	},
	flow: func(s *ir.EqualStmt, f *flow) { f.reads(s.Location, s.A, s.B) },
}

type equalStmt struct{ *ir.EqualStmt }

func (s equalStmt) exec(st *state) (int, error) {
	locals := st.locals
	a, b := st.read(locals, s.A), st.read(locals, s.B)
	if a == nil || b == nil || !equal(a, b) {
		return 0, nil
	}
	return completed, nil
}

func (s equalStmt) useInput(u *inputUses) {
	if u.isIn(s.A) || u.isIn(s.B) {
		u.all()
	}
}

var notEqualRow = kind[*ir.NotEqualStmt]{
	compile: func(c *compiler, s *ir.NotEqualStmt) (instr, error) {
		return notEqualStmt{s}, c.uses(s.Location, nil, s.A, s.B)
	},
	flow: func(s *ir.NotEqualStmt, f *flow) { f.reads(s.Location, s.A, s.B) },
}

type notEqualStmt struct{ *ir.NotEqualStmt }

func (s notEqualStmt) exec(st *state) (int, error) {
	locals := st.locals
	a, b := st.read(locals, s.A), st.read(locals, s.B)
	if a == nil || b == nil || equal(a, b) {
		return 0, nil
	}
	return completed, nil
}

func (s notEqualStmt) useInput(u *inputUses) {
	if u.isIn(s.A) || u.isIn(s.B) {
		u.all()
	}
}

// CallStmt: result = f(args), f one of the plan's functions (callFunc) or a
// built-in (callBuiltin). A call of a function's rules as a document is
// undefined.

var callRow = kind[*ir.CallStmt]{
	compile: func(c *compiler, s *ir.CallStmt) (instr, error) {
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
				return undefined{}, nil
			}
			if len(args) != len(fn.params) {
				return nil, c.unsupported(s.Location, fmt.Sprintf("a call of %s with %d arguments (it takes %d)", fn.rule, len(args), len(fn.params)))
			}
			return &callFunc{Location: s.Location, fn: fn, args: args, result: c.target(s.Result)}, nil
		}
		if fn, ok := c.builtins[s.Func]; ok {
			loc := c.location(s.Location)
			decl, ok := ast.BuiltinMap[s.Func]
			if !ok || fn == nil {
				// declared to the compiler, but no built-in of OPA's
				return nil, c.unsupported(s.Location, "the custom built-in "+s.Func)
			}
			return &callBuiltin{
				Location: s.Location, name: s.Func, fn: fn, args: args, result: c.target(s.Result), loc: loc,
				bare: decl.CanSkipBctx, bctx: topdown.BuiltinContext{Location: loc},
				relation: decl.Relation, void: decl.Decl.Result() == nil, nondeterministic: decl.Nondeterministic,
				native: natives[s.Func],
			}, nil
		}
		return nil, c.unsupported(s.Location, "a call of "+planned(s.Func)+", which the plan does not define")
	},
	flow: func(s *ir.CallStmt, f *flow) {
		f.reads(s.Location, s.Args...)
		f.sets(s.Result)
	},
}

type callFunc struct {
	ir.Location
	fn     *function
	args   []ir.Operand
	result ir.Local
}

func (s *callFunc) exec(st *state) (int, error) {
	locals := st.locals
	v, err := st.call(locals, s.fn, s.args)
	if err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	locals[s.result] = v
	return completed, nil
}

func (s *callFunc) useInput(u *inputUses) {
	// A function gets the input as its first argument; its own
	// statements are scanned with it.
	for i, a := range s.args {
		if i != 0 && u.isIn(a) {
			u.all()
		}
	}
}

type callBuiltin struct {
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

func (s *callBuiltin) exec(st *state) (int, error) {
	locals := st.locals
	v, err := st.callBuiltin(locals, s)
	if err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	locals[s.result] = v
	return completed, nil
}

func (s *callBuiltin) useInput(u *inputUses) {
	for _, a := range s.args {
		if u.isIn(a) {
			u.all()
		}
	}
}

// undefined is a statement that is always undefined.
type undefined struct{}

func (undefined) exec(*state) (int, error) { return 0, nil }

func (undefined) useInput(*inputUses) {}

// CallDynamicStmt: result = the call of the function whose path the
// operands give, if there is one.

var callDynamicRow = kind[*ir.CallDynamicStmt]{
	compile: func(c *compiler, s *ir.CallDynamicStmt) (instr, error) {
		path, err := c.operands(s.Location, s.Path)
		if err != nil {
			return nil, err
		}
		out := &callDynamic{Location: s.Location, path: path, result: c.target(s.Result)}
		for _, a := range s.Args {
			out.args = append(out.args, ir.Operand{Value: c.local(a)})
		}
		return out, nil
	},
	flow: func(s *ir.CallDynamicStmt, f *flow) {
		f.reads(s.Location, s.Path...)
		for _, a := range s.Args {
			f.reads(s.Location, ir.Operand{Value: a})
		}
		f.sets(s.Result)
	},
}

type callDynamic struct {
	ir.Location
	path   []ir.Operand
	args   []ir.Operand
	result ir.Local
}

func (s *callDynamic) exec(st *state) (int, error) {
	locals := st.locals
	fn := s.function(st, locals)
	if fn == nil {
		return 0, nil
	}
	v, err := st.call(locals, fn, s.args)
	if err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	locals[s.result] = v
	return completed, nil
}

// function is the function the call names: the planned function whose
// path is the call's (data.pkgs[x].allow with x "a": g0.data.pkgs.a.allow),
// nil if there is none (the plan then reads the base document).
func (s *callDynamic) function(st *state, locals []Value) *function {
	var b strings.Builder
	for i, o := range s.path {
		str, ok := st.read(locals, o).(string)
		if !ok {
			return nil
		}
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(str)
	}
	fn := st.prog.byPath[b.String()]
	if fn == nil || len(fn.params) != len(s.args) {
		return nil
	}
	return fn
}

func (s *callDynamic) useInput(u *inputUses) {
	for i, a := range s.args {
		if i != 0 && u.isIn(a) {
			u.all()
		}
	}
	for _, a := range s.path {
		if u.isIn(a) {
			u.all()
		}
	}
}

// MakeNumberRefStmt, MakeNumberIntStmt, AssignIntStmt and MakeNullStmt:
// target = a constant (makeConst).

var makeNumberRefRow = kind[*ir.MakeNumberRefStmt]{
	compile: func(c *compiler, s *ir.MakeNumberRefStmt) (instr, error) {
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
		return &makeConst{value: ast.Number(str), target: c.constant(s.Target)}, nil
	},
	flow: func(s *ir.MakeNumberRefStmt, f *flow) { f.sets(s.Target) },
}

var makeNumberIntRow = kind[*ir.MakeNumberIntStmt]{
	compile: func(c *compiler, s *ir.MakeNumberIntStmt) (instr, error) {
		return &makeConst{value: ast.Number(strconv.FormatInt(s.Value, 10)), target: c.constant(s.Target)}, nil
	},
	flow: func(s *ir.MakeNumberIntStmt, f *flow) { f.sets(s.Target) },
}

// Unlike the others, an AssignIntStmt does not make its target one of the
// compiler's constants (c.consts).
var assignIntRow = kind[*ir.AssignIntStmt]{
	compile: func(c *compiler, s *ir.AssignIntStmt) (instr, error) {
		return &makeConst{value: ast.Number(strconv.FormatInt(s.Value, 10)), target: c.local(s.Target)}, nil
	},
	flow: func(s *ir.AssignIntStmt, f *flow) { f.sets(s.Target) },
}

var makeNullRow = kind[*ir.MakeNullStmt]{
	compile: func(c *compiler, s *ir.MakeNullStmt) (instr, error) {
		return &makeConst{value: Null{}, target: c.constant(s.Target)}, nil
	},
	flow: func(s *ir.MakeNullStmt, f *flow) { f.sets(s.Target) },
}

type makeConst struct {
	value  Value
	target ir.Local
}

func (s *makeConst) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.target] = s.value
	return completed, nil
}

func (s *makeConst) useInput(*inputUses) {}

// ResetLocalStmt: target = undefined.

var resetLocalRow = kind[*ir.ResetLocalStmt]{
	compile: func(c *compiler, s *ir.ResetLocalStmt) (instr, error) {
		c.local(s.Target)
		return resetLocal{s}, nil
	},
	flow: func(s *ir.ResetLocalStmt, f *flow) {
		f.sets(s.Target)
		f.shares(s.Target)
	},
}

type resetLocal struct{ *ir.ResetLocalStmt }

func (s resetLocal) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.Target] = nil
	return completed, nil
}

func (s resetLocal) useInput(*inputUses) {}

// IsDefinedStmt and IsUndefinedStmt: whether a local is set (no read of
// its value).

var isDefinedRow = kind[*ir.IsDefinedStmt]{
	compile: func(c *compiler, s *ir.IsDefinedStmt) (instr, error) {
		c.local(s.Source)
		return isDefined{s}, nil
	},
}

type isDefined struct{ *ir.IsDefinedStmt }

func (s isDefined) exec(st *state) (int, error) {
	locals := st.locals
	if locals[s.Source] == nil {
		return 0, nil
	}
	return completed, nil
}

func (s isDefined) useInput(*inputUses) {}

var isUndefinedRow = kind[*ir.IsUndefinedStmt]{
	compile: func(c *compiler, s *ir.IsUndefinedStmt) (instr, error) {
		c.local(s.Source)
		return isUndefined{s}, nil
	},
}

type isUndefined struct{ *ir.IsUndefinedStmt }

func (s isUndefined) exec(st *state) (int, error) {
	locals := st.locals
	if locals[s.Source] != nil {
		return 0, nil
	}
	return completed, nil
}

func (s isUndefined) useInput(*inputUses) {}

// ReturnLocalStmt: the function returns source.

var returnLocalRow = kind[*ir.ReturnLocalStmt]{
	compile: func(c *compiler, s *ir.ReturnLocalStmt) (instr, error) {
		c.local(s.Source)
		return returnLocal{s}, nil
	},
	flow: func(s *ir.ReturnLocalStmt, f *flow) { f.shares(s.Source) },
}

type returnLocal struct{ *ir.ReturnLocalStmt }

func (s returnLocal) exec(st *state) (int, error) {
	locals := st.locals
	st.ret = locals[s.Source]
	return returned, nil
}

func (s returnLocal) useInput(u *inputUses) {
	if s.Source == u.in {
		u.all()
	}
}

// BreakStmt: leave the block and index more around it.

var breakRow = kind[*ir.BreakStmt]{
	compile: func(_ *compiler, s *ir.BreakStmt) (instr, error) { return breakStmt{s}, nil },
}

type breakStmt struct{ *ir.BreakStmt }

func (s breakStmt) exec(*state) (int, error) { return int(s.Index), nil }

func (s breakStmt) useInput(*inputUses) {}

// NopStmt: nothing.

var nopRow = kind[*ir.NopStmt]{
	compile: func(*compiler, *ir.NopStmt) (instr, error) { return nop{}, nil },
}

type nop struct{}

func (nop) exec(*state) (int, error) { return completed, nil }

func (nop) useInput(*inputUses) {}

// BlockStmt: its blocks in turn, the next run when one completes or is
// undefined (a rule's bodies: the next rule). A block statement the scan
// of a base document follows is a baseFirst (see compiler.block).

var blockRow = kind[*ir.BlockStmt]{
	compile: func(c *compiler, s *ir.BlockStmt) (instr, error) {
		out := &blockStmt{}
		for _, b := range s.Blocks {
			stmts, err := c.block(b)
			if err != nil {
				return nil, err
			}
			out.blocks = append(out.blocks, stmts)
		}
		return out, nil
	},
	flow: func(s *ir.BlockStmt, f *flow) { f.branches(s.Blocks) },
}

type blockStmt struct {
	blocks [][]instr
}

func (s *blockStmt) exec(st *state) (int, error) {
	for _, b := range s.blocks {
		r, err := st.exec(b)
		if err != nil || r == returned {
			return r, err
		}
		if r >= 1 {
			return r - 1, nil
		}
	}
	return completed, nil
}

func (s *blockStmt) useInput(u *inputUses) {
	for _, b := range s.blocks {
		u.block(b)
	}
}

// baseFirst runs the scan of a base document (base: the rest of a block)
// before the blocks evaluating the rules beside it (virtual): topdown
// enumerates data.pkg[k] base keys first, the planner the rules first.
type baseFirst struct {
	virtual *blockStmt
	base    []instr
}

func (s *baseFirst) exec(st *state) (int, error) {
	// The base document's part leaves the block, or outer ones, as the
	// statements it is made of do; a break out of the block ends the
	// enumeration before the rules, as in topdown.
	rb, err := st.exec(s.base)
	if err != nil || (rb != completed && rb != 0) {
		return rb, err
	}
	if r, err := s.virtual.exec(st); r != completed || err != nil {
		return r, err
	}
	if rb == 0 {
		return 0, nil
	}
	return completed, nil
}

func (s *baseFirst) useInput(u *inputUses) {
	s.virtual.useInput(u)
	u.block(s.base)
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

// ScanStmt: the body once per element of a collection (key, value); a
// scalar has none. A body left with one level more than its own (break 1)
// ends the scan; more leave the blocks around it. The scan of an every
// (see everyFound) ends at its first counterexample, as topdown's does.

var scanRow = kind[*ir.ScanStmt]{
	compile: func(c *compiler, s *ir.ScanStmt) (instr, error) {
		body, err := c.block(s.Block)
		return &scanStmt{source: c.local(s.Source), key: c.local(s.Key), value: c.local(s.Value), body: body}, err
	},
	flow: func(s *ir.ScanStmt, f *flow) {
		f.reads(s.Location, ir.Operand{Value: s.Source})
		f.sets(s.Key, s.Value)
		f.body(s.Block)
	},
}

type scanStmt struct {
	source, key, value ir.Local
	body               []instr
	// every: the scan of an every, which ends when its body sets found.
	every bool
	found ir.Local
}

func (s *scanStmt) exec(st *state) (int, error) {
	locals := st.locals
	r := completed
	var err error
	// next: go on to the next element; an every stops at its first
	// counterexample.
	next := func() bool {
		return (r == completed || r == 0) && err == nil && !(s.every && locals[s.found] != nil)
	}
	switch c := locals[s.source].(type) {
	case *Array:
		for i := 0; i < len(c.elems) && next(); i++ {
			r, err = s.iteration(st, locals, intNumber(i), c.elems[i])
		}
	case *Object:
		c.sort()
		for i := 0; i < len(c.kvs) && next(); i++ {
			r, err = s.iteration(st, locals, c.kvs[i].k, c.kvs[i].v)
		}
	case *Set:
		c.sort()
		for i := 0; i < len(c.elems) && next(); i++ {
			r, err = s.iteration(st, locals, c.elems[i], c.elems[i])
		}
	}
	switch {
	case err != nil || r == returned:
		return r, err
	case r >= 2:
		return r - 2, nil
	}
	return completed, nil
}

func (s *scanStmt) iteration(st *state, locals []Value, k, v Value) (int, error) {
	if st.steps++; st.steps%checkEvery == 0 {
		if err := st.ctx.Err(); err != nil {
			return 0, cancelled(err)
		}
	}
	locals[s.key], locals[s.value] = k, v
	return st.exec(s.body)
}

func (s *scanStmt) useInput(u *inputUses) {
	if s.source == u.in || s.key == u.in || s.value == u.in {
		u.all()
	}
	u.block(s.body)
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

// NotStmt: defined when its body is not.

var notRow = kind[*ir.NotStmt]{
	compile: func(c *compiler, s *ir.NotStmt) (instr, error) {
		body, err := c.block(s.Block)
		return &notStmt{body: body}, err
	},
	flow: func(s *ir.NotStmt, f *flow) { f.body(s.Block) },
}

type notStmt struct {
	body []instr
}

func (s *notStmt) exec(st *state) (int, error) {
	r, err := st.exec(s.body)
	switch {
	case err != nil || r == returned:
		return r, err
	case r == completed:
		return 0, nil
	case r >= 1:
		return r - 1, nil
	}
	return completed, nil
}

func (s *notStmt) useInput(u *inputUses) { u.block(s.body) }

// WithStmt: its body with local's value at path replaced by value.

var withRow = kind[*ir.WithStmt]{
	compile: func(c *compiler, s *ir.WithStmt) (instr, error) {
		out := &withStmt{local: c.local(s.Local)}
		for _, i := range s.Path {
			if i < 0 || i >= len(c.strings) {
				return nil, c.unsupported(s.Location, fmt.Sprintf("a plan's string constant %d (of %d)", i, len(c.strings)))
			}
			out.path = append(out.path, c.strings[i])
		}
		var err error
		if out.value, err = c.operand(s.Location, s.Value); err != nil {
			return nil, err
		}
		out.body, err = c.block(s.Block)
		return out, err
	},
	flow: func(s *ir.WithStmt, f *flow) {
		f.reads(s.Location, s.Value)
		f.sets(s.Local)
		f.body(s.Block)
	},
}

type withStmt struct {
	local ir.Local
	path  []Value
	value ir.Operand
	body  []instr
}

func (s *withStmt) exec(st *state) (int, error) {
	locals := st.locals
	saved := locals[s.local]
	// The value may be undefined: the planner restores an undefined input
	// with the same statement that replaces it.
	v := st.read(locals, s.value)
	if v == nil && len(s.path) > 0 {
		return 0, nil
	}
	locals[s.local] = upsert(saved, s.path, v)
	st.pushMemo()
	r, err := st.exec(s.body)
	st.popMemo()
	locals[s.local] = saved
	switch {
	case err != nil || r == returned:
		return r, err
	case r == 0:
		return 0, nil
	case r >= 1:
		return r - 1, nil
	}
	return completed, nil
}

func (s *withStmt) useInput(u *inputUses) {
	if u.isIn(s.value) {
		u.all()
	}
	u.block(s.body)
}

// MakeArrayStmt, MakeObjectStmt, MakeSetStmt: target = an empty
// collection.

var makeArrayRow = kind[*ir.MakeArrayStmt]{
	compile: func(c *compiler, s *ir.MakeArrayStmt) (instr, error) {
		c.target(s.Target)
		return makeArray{s}, nil
	},
	flow: func(s *ir.MakeArrayStmt, f *flow) { f.sets(s.Target) },
}

type makeArray struct{ *ir.MakeArrayStmt }

func (s makeArray) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.Target] = newArray(int(s.Capacity))
	return completed, nil
}

func (s makeArray) useInput(*inputUses) {}

var makeObjectRow = kind[*ir.MakeObjectStmt]{
	compile: func(c *compiler, s *ir.MakeObjectStmt) (instr, error) {
		c.target(s.Target)
		return makeObject{s}, nil
	},
	flow: func(s *ir.MakeObjectStmt, f *flow) {
		f.sets(s.Target)
		f.shares(s.Target)
	},
}

type makeObject struct{ *ir.MakeObjectStmt }

func (s makeObject) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.Target] = &Object{}
	return completed, nil
}

func (s makeObject) useInput(*inputUses) {}

var makeSetRow = kind[*ir.MakeSetStmt]{
	compile: func(c *compiler, s *ir.MakeSetStmt) (instr, error) {
		c.target(s.Target)
		return makeSet{s}, nil
	},
	flow: func(s *ir.MakeSetStmt, f *flow) {
		f.sets(s.Target)
		f.shares(s.Target)
	},
}

type makeSet struct{ *ir.MakeSetStmt }

func (s makeSet) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.Target] = &Set{}
	return completed, nil
}

func (s makeSet) useInput(*inputUses) {}

// ArrayAppendStmt, SetAddStmt: add a defined value to a collection.

var arrayAppendRow = kind[*ir.ArrayAppendStmt]{
	compile: func(c *compiler, s *ir.ArrayAppendStmt) (instr, error) {
		return arrayAppend{s}, c.uses(s.Location, []ir.Local{s.Array}, s.Value)
	},
	flow: func(s *ir.ArrayAppendStmt, f *flow) { f.reads(s.Location, s.Value) },
}

type arrayAppend struct{ *ir.ArrayAppendStmt }

func (s arrayAppend) exec(st *state) (int, error) {
	locals := st.locals
	arr, ok := locals[s.Array].(*Array)
	v := st.read(locals, s.Value)
	if !ok || v == nil {
		return 0, nil
	}
	arr.append(v)
	return completed, nil
}

func (s arrayAppend) useInput(u *inputUses) {
	if u.isIn(s.Value) {
		u.all()
	}
}

var setAddRow = kind[*ir.SetAddStmt]{
	compile: func(c *compiler, s *ir.SetAddStmt) (instr, error) {
		return setAdd{s}, c.uses(s.Location, []ir.Local{s.Set}, s.Value)
	},
	flow: func(s *ir.SetAddStmt, f *flow) { f.reads(s.Location, s.Value) },
}

type setAdd struct{ *ir.SetAddStmt }

func (s setAdd) exec(st *state) (int, error) {
	locals := st.locals
	set, ok := locals[s.Set].(*Set)
	v := st.read(locals, s.Value)
	if !ok || v == nil {
		return 0, nil
	}
	set.add(v)
	return completed, nil
}

func (s setAdd) useInput(u *inputUses) {
	if u.isIn(s.Value) {
		u.all()
	}
}

// ObjectInsertStmt: object[key] = value, both defined; a key already
// there is replaced.

var objectInsertRow = kind[*ir.ObjectInsertStmt]{
	compile: func(c *compiler, s *ir.ObjectInsertStmt) (instr, error) {
		return objectInsert{s}, c.uses(s.Location, []ir.Local{s.Object}, s.Key, s.Value)
	},
	flow: func(s *ir.ObjectInsertStmt, f *flow) { f.reads(s.Location, s.Key, s.Value) },
}

type objectInsert struct{ *ir.ObjectInsertStmt }

func (s objectInsert) exec(st *state) (int, error) {
	locals := st.locals
	obj, ok := locals[s.Object].(*Object)
	k, v := st.read(locals, s.Key), st.read(locals, s.Value)
	if !ok || k == nil || v == nil {
		return 0, nil
	}
	obj.insert(k, v)
	return completed, nil
}

func (s objectInsert) useInput(u *inputUses) {
	if u.isIn(s.Key) || u.isIn(s.Value) {
		u.all()
	}
}

// ObjectInsertOnceStmt: object[key] = value, unless the key holds another
// value: then the keys or the rules conflict. ground: it inserts the value
// of a rule whose head names its key (p["a"] := 1), which topdown holds a
// complete rule of its own (data.t.p.a).

var objectInsertOnceRow = kind[*ir.ObjectInsertOnceStmt]{
	compile: func(c *compiler, s *ir.ObjectInsertOnceStmt) (instr, error) {
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
	},
	flow: func(s *ir.ObjectInsertOnceStmt, f *flow) { f.reads(s.Location, s.Key, s.Value) },
}

type insertOnce struct {
	*ir.ObjectInsertOnceStmt
	fn *function
	// rule: it inserts a rule's value into the function's object;
	// named: at the key the rule's head names; ground: so do all the
	// function's rules.
	rule, named, ground bool
}

func (s *insertOnce) exec(st *state) (int, error) {
	locals := st.locals
	obj, ok := locals[s.Object].(*Object)
	k, v := st.read(locals, s.Key), st.read(locals, s.Value)
	if !ok || k == nil || v == nil {
		return 0, nil
	}
	if c := st.collect; c != nil && c.fn == s.fn && s.rule && (c.inserts || c.key != nil && s.ground) {
		switch {
		case c.inserts:
			c.insertions = append(c.insertions, insertion{k, v, s.Location, s.named})
		case equal(k, c.key):
			c.add(v, s.Location)
		}
		if obj.Get(k) == nil {
			obj.insert(k, v)
		}
		return completed, nil
	}
	if cur := obj.Get(k); cur != nil {
		if !equal(cur, v) {
			switch {
			case s.ground:
				return 0, &conflictFound{fn: s.fn, loc: s.Location, key: k}
			case s.rule:
				return 0, &conflictFound{fn: s.fn, loc: s.Location, partial: true}
			}
			return 0, conflict(st.loc(s.Location), "object keys must be unique")
		}
		return completed, nil
	}
	obj.insert(k, v)
	return completed, nil
}

func (s *insertOnce) useInput(u *inputUses) {
	if u.isIn(s.Key) || u.isIn(s.Value) {
		u.all()
	}
}

// ObjectMergeStmt: target = a base document merged with the rules' values
// beside it (see merge).

var objectMergeRow = kind[*ir.ObjectMergeStmt]{
	compile: func(c *compiler, s *ir.ObjectMergeStmt) (instr, error) {
		c.local(s.A)
		c.local(s.B)
		c.target(s.Target)
		return objectMerge{s}, nil
	},
	flow: func(s *ir.ObjectMergeStmt, f *flow) { f.sets(s.Target) },
}

type objectMerge struct{ *ir.ObjectMergeStmt }

func (s objectMerge) exec(st *state) (int, error) {
	locals := st.locals
	locals[s.Target] = merge(locals[s.A], locals[s.B])
	return completed, nil
}

func (s objectMerge) useInput(u *inputUses) {
	if s.A == u.in || s.B == u.in || s.Target == u.in {
		u.all()
	}
}

// LenStmt: target = the length of a string or collection.

var lenRow = kind[*ir.LenStmt]{
	compile: func(c *compiler, s *ir.LenStmt) (instr, error) {
		c.target(s.Target)
		return lenStmt{s}, c.uses(s.Location, nil, s.Source)
	},
	flow: func(s *ir.LenStmt, f *flow) {
		f.reads(s.Location, s.Source)
		f.sets(s.Target)
	},
}

type lenStmt struct{ *ir.LenStmt }

func (s lenStmt) exec(st *state) (int, error) {
	locals := st.locals
	n, ok := length(st.read(locals, s.Source))
	if !ok {
		return 0, nil
	}
	locals[s.Target] = intNumber(n)
	return completed, nil
}

func (s lenStmt) useInput(u *inputUses) {
	if u.isIn(s.Source) {
		u.all()
	}
}

// IsArrayStmt, IsObjectStmt, IsSetStmt: whether a value is one.

var isArrayRow = kind[*ir.IsArrayStmt]{
	compile: func(c *compiler, s *ir.IsArrayStmt) (instr, error) {
		return isKind[*Array]{s.Source}, c.uses(s.Location, nil, s.Source)
	},
	flow: func(s *ir.IsArrayStmt, f *flow) { f.reads(s.Location, s.Source) },
}

var isObjectRow = kind[*ir.IsObjectStmt]{
	compile: func(c *compiler, s *ir.IsObjectStmt) (instr, error) {
		return isKind[*Object]{s.Source}, c.uses(s.Location, nil, s.Source)
	},
	flow: func(s *ir.IsObjectStmt, f *flow) { f.reads(s.Location, s.Source) },
}

var isSetRow = kind[*ir.IsSetStmt]{
	compile: func(c *compiler, s *ir.IsSetStmt) (instr, error) {
		return isKind[*Set]{s.Source}, c.uses(s.Location, nil, s.Source)
	},
	flow: func(s *ir.IsSetStmt, f *flow) { f.reads(s.Location, s.Source) },
}

// isKind is defined when its source is a V.
type isKind[V Value] struct{ source ir.Operand }

func (s isKind[V]) exec(st *state) (int, error) {
	if _, ok := st.read(st.locals, s.source).(V); !ok {
		return 0, nil
	}
	return completed, nil
}

func (s isKind[V]) useInput(u *inputUses) {
	if u.isIn(s.source) {
		u.all()
	}
}

// ResultSetAddStmt: a result of the plan.

var resultSetAddRow = kind[*ir.ResultSetAddStmt]{
	compile: func(c *compiler, s *ir.ResultSetAddStmt) (instr, error) {
		c.local(s.Value)
		return resultSetAdd{s}, nil
	},
	flow: func(s *ir.ResultSetAddStmt, f *flow) { f.reads(s.Location, ir.Operand{Value: s.Value}) },
}

type resultSetAdd struct{ *ir.ResultSetAddStmt }

func (s resultSetAdd) exec(st *state) (int, error) {
	locals := st.locals
	if v := locals[s.Value]; v != nil {
		st.results.add(v)
	}
	return completed, nil
}

func (s resultSetAdd) useInput(u *inputUses) {
	if s.Value == u.in {
		u.all()
	}
}
