package vm

import (
	"context"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// state is one evaluation.
type state struct {
	ctx     context.Context
	prog    *Program
	opts    EvalOptions
	time    time.Time
	results *Set
	// memo holds the results of argument-free functions; a with statement
	// pushes a fresh frame, as the values it replaces change them.
	memo [][]memoEntry
	// stack backs the functions' local frames; frame is the plan's.
	stack []Value
	frame []Value
	// locals is the frame of the function or plan running.
	locals []Value
	ret    Value
	// built-in calls: the context, made on first use, and the buffers
	bctx       *topdown.BuiltinContext
	bctxStore  topdown.BuiltinContext
	stopCancel func() bool
	vals       []Value
	args       []*ast.Term
	out        *ast.Term
	outs       []*ast.Term
	many       bool
	called     bool
	onOut      func(*ast.Term) error
	// builtinErr is the first error a built-in returned: the result of
	// the evaluation in strict mode, as in topdown.
	builtinErr error
	// calling is the built-in being called, named if it panics.
	calling *callBuiltin
	// collect gathers the values of a function whose rules conflict.
	collect *collector
	steps   int
}

func newState() *state {
	st := &state{}
	st.onOut = func(t *ast.Term) error {
		st.called = true
		if st.many {
			st.outs = append(st.outs, t)
		} else {
			st.out = t
		}
		return nil
	}
	return st
}

// pushMemo starts a memo frame, reusing an earlier one's memory.
func (st *state) pushMemo() {
	n, i := len(st.prog.funcs), len(st.memo)
	if i < cap(st.memo) {
		st.memo = st.memo[:i+1]
		if cap(st.memo[i]) >= n {
			st.memo[i] = st.memo[i][:n]
			return
		}
	} else {
		st.memo = append(st.memo, nil)
	}
	st.memo[i] = make([]memoEntry, n)
}

func (st *state) popMemo() {
	i := len(st.memo) - 1
	clear(st.memo[i])
	st.memo = st.memo[:i]
}

// reset readies a state for the pool: it keeps the buffers, drops every
// value.
func (st *state) reset() {
	if st.stopCancel != nil {
		st.stopCancel()
		st.stopCancel = nil
	}
	st.ctx, st.prog, st.ret, st.out, st.bctx, st.locals = nil, nil, nil, nil, nil, nil
	st.opts, st.bctxStore = EvalOptions{}, topdown.BuiltinContext{}
	st.results, st.builtinErr, st.calling, st.collect = nil, nil, nil, nil
	for len(st.memo) > 0 {
		st.popMemo()
	}
	// Functions clear their frames as they return; an error leaves them.
	clear(st.stack)
	st.stack = st.stack[:0]
	clear(st.args)
	st.args = st.args[:0]
	clear(st.vals)
	st.vals = st.vals[:0]
	clear(st.outs)
	st.outs = st.outs[:0]
	clear(st.frame)
	st.steps = 0
}

type memoEntry struct {
	done  bool
	value Value
}

// checkEvery is how many loop iterations and calls pass between checks of
// the context.
const checkEvery = 1024

// cancelled is the error of an evaluation whose context ended, as topdown
// gives it.
func cancelled(err error) error {
	return (&topdown.Error{Code: topdown.CancelErr, Message: err.Error()}).Wrap(err)
}

func (st *state) read(locals []Value, o ir.Operand) Value {
	switch v := o.Value.(type) {
	case ir.Local:
		return locals[v]
	case ir.StringIndex:
		return st.prog.strings[v]
	case ir.Bool:
		return bool(v)
	}
	return nil
}

func conflict(loc *ast.Location, msg string) error {
	return &topdown.Error{Code: topdown.ConflictErr, Message: msg, Location: loc}
}

func (st *state) loc(l ir.Location) *ast.Location {
	loc := &ast.Location{Row: l.Row, Col: l.Col}
	if l.File >= 0 && l.File < len(st.prog.files) {
		loc.File = st.prog.files[l.File]
	}
	return loc
}

// exec runs a block's statements, on the frame st.locals. It returns
// completed, returned (st.ret holds the value), or the number of enclosing
// blocks left to leave after this one. Each statement runs by its own exec
// (see the statement table).
func (st *state) exec(code []instr) (int, error) {
	for _, s := range code {
		if r, err := s.exec(st); r != completed || err != nil {
			return r, err
		}
	}
	return completed, nil
}

// upsert returns a copy of doc with value at path, creating the objects on
// the way.
func upsert(doc Value, path []Value, value Value) Value {
	if len(path) == 0 {
		return value
	}
	obj := &Object{}
	if cur, ok := doc.(*Object); ok {
		obj.kvs = append(obj.kvs, cur.kvs...)
		obj.unsorted = cur.unsorted
		if cur.index != nil {
			obj.index = make(map[uint64][]int, len(cur.index))
			for h, is := range cur.index {
				obj.index[h] = append([]int(nil), is...)
			}
		}
	}
	obj.insert(path[0], upsert(obj.Get(path[0]), path[1:], value))
	return obj
}

// merge merges a base document (a) with the rules' values beside it (b),
// as topdown does: objects key by key, and a's value where the two are not
// both objects.
func merge(a, b Value) Value {
	if a == nil {
		return b
	}
	oa, ok1 := a.(*Object)
	ob, ok2 := b.(*Object)
	if !ok1 || !ok2 {
		return a
	}
	out := newObject(len(oa.kvs) + len(ob.kvs))
	for _, p := range oa.kvs {
		if v := ob.Get(p.k); v != nil {
			out.insert(p.k, merge(p.v, v))
			continue
		}
		out.insert(p.k, p.v)
	}
	for _, p := range ob.kvs {
		if oa.Get(p.k) == nil {
			out.insert(p.k, p.v)
		}
	}
	return out
}

// call calls fn with args, read from the caller's locals: fn's blocks run
// on a frame of their own, st.locals while they run.
func (st *state) call(locals []Value, fn *function, args []ir.Operand) (Value, error) {
	memo := st.memo[len(st.memo)-1]
	if fn.memo && memo[fn.index].done {
		return memo[fn.index].value, nil
	}
	if st.steps++; st.steps%checkEvery == 0 {
		if err := st.ctx.Err(); err != nil {
			return nil, cancelled(err)
		}
	}
	// The stack past its length is all nil: frames are cleared as they
	// return (and by reset after an error).
	base := len(st.stack)
	if base+fn.locals <= cap(st.stack) {
		st.stack = st.stack[:base+fn.locals]
	} else {
		st.stack = append(st.stack, make([]Value, fn.locals)...)
	}
	frame := st.stack[base : base+fn.locals : base+fn.locals]
	for i, p := range fn.params {
		frame[p] = st.read(locals, args[i])
	}
	var result Value
	st.locals = frame
	for _, b := range fn.blocks {
		r, err := st.exec(b)
		if err != nil {
			st.locals = locals
			if cf, ok := err.(*conflictFound); ok && cf.fn == fn {
				err = st.conflictError(locals, fn, args, cf)
			}
			return nil, err
		}
		if r == returned {
			result = st.ret
			break
		}
	}
	st.locals = locals
	// A call below may have moved the stack: clear the frame where it is now.
	clear(st.stack[base : base+fn.locals])
	st.stack = st.stack[:base]
	if fn.memo {
		memo[fn.index] = memoEntry{done: true, value: result}
	}
	return result, nil
}

func (st *state) callBuiltin(locals []Value, s *callBuiltin) (Value, error) {
	st.vals = st.vals[:0]
	for _, a := range s.args {
		v := st.read(locals, a)
		if v == nil {
			return nil, nil
		}
		st.vals = append(st.vals, v)
	}
	if s.native != nil {
		if v, ok := s.native(st.vals); ok {
			return v, nil
		}
	}
	st.args = st.args[:0]
	for _, v := range st.vals {
		st.args = append(st.args, toTerm(v))
	}
	// As topdown: built-ins that can do without a context get only the
	// call's place.
	bctx := s.bctx
	if !s.bare {
		bctx = *st.builtinContext()
		bctx.Location = s.loc
	}
	var ndKey *ast.Array
	if s.nondeterministic && bctx.NDBuiltinCache != nil {
		ndKey = ast.NewArray(slices.Clone(st.args)...)
		if v, ok := bctx.NDBuiltinCache.Get(s.name, ndKey); ok {
			return FromAST(v), nil
		}
	}
	st.out, st.called, st.many = nil, false, s.relation
	st.calling = s
	err := s.fn(bctx, st.args, st.onOut)
	st.calling = nil
	if err != nil {
		if h, ok := err.(topdown.Halt); ok {
			return nil, h.Err
		}
		// As topdown: the call is undefined, and the error is the
		// evaluation's in strict mode.
		if st.builtinErr == nil {
			st.builtinErr = err
		}
		if err := st.ctx.Err(); err != nil {
			return nil, cancelled(err)
		}
		return nil, nil
	}
	switch {
	case s.relation:
		// The planner iterates a relation's outputs as an array's
		// elements.
		arr := newArray(len(st.outs))
		for _, t := range st.outs {
			arr.elems = append(arr.elems, FromAST(t.Value))
		}
		clear(st.outs)
		st.outs = st.outs[:0]
		return arr, nil
	case s.void:
		// print: nothing to bind, but the body goes on.
		if !st.called {
			return nil, nil
		}
		return true, nil
	case st.out == nil:
		return nil, nil
	}
	if ndKey != nil {
		bctx.NDBuiltinCache.Put(s.name, ndKey, st.out.Value)
	}
	return FromAST(st.out.Value), nil
}

func dot(src, key Value) Value {
	if src == nil || key == nil {
		return nil
	}
	switch c := src.(type) {
	case *Object:
		return c.Get(key)
	case *Array:
		n, ok := key.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= len(c.elems) {
			return nil
		}
		return c.elems[i]
	case *Set:
		// s[x] is x, as in topdown: 1.0 looked up in {1} is 1.0.
		if c.find(key) >= 0 {
			return key
		}
	}
	return nil
}

func length(v Value) (int, bool) {
	switch x := v.(type) {
	case nil:
		return 0, false
	case string:
		return utf8.RuneCountInString(x), true
	case *Array:
		return len(x.elems), true
	case *Object:
		return len(x.kvs), true
	case *Set:
		return len(x.elems), true
	}
	return 0, true
}

// intNumber is the number n; small ones are shared.
func intNumber(n int) Value {
	if n >= 0 && n < len(smallInts) {
		return smallInts[n]
	}
	return ast.Number(strconv.Itoa(n))
}

var smallInts = func() []Value {
	out := make([]Value, 1024)
	for i := range out {
		out[i] = ast.Number(strconv.Itoa(i))
	}
	return out
}()
