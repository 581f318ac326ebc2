package vm

import (
	"context"
	"slices"
	"strconv"
	"strings"
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
	ret   Value
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
	st.ctx, st.prog, st.ret, st.out, st.bctx = nil, nil, nil, nil, nil
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

// exec runs a block's statements. It returns completed, returned (st.ret
// holds the value), or the number of enclosing blocks left to leave after
// this one.
func (st *state) exec(locals []Value, code []instr) (int, error) {
	for i := range code {
		in := &code[i]
		switch in.op {
		case opAssignVar:
			s := in.stmt.(*ir.AssignVarStmt)
			locals[s.Target] = st.read(locals, s.Source)
		case opAssignVarOnce:
			s := in.stmt.(*assignOnce)
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
				continue
			}
			if cur := locals[s.target]; cur != nil {
				if !equal(cur, v) {
					return 0, &conflictFound{fn: s.fn, loc: s.Location}
				}
				continue
			}
			locals[s.target] = v
		case opUndefined:
			return 0, nil
		case opDot:
			s := in.stmt.(*ir.DotStmt)
			v := dot(st.read(locals, s.Source), st.read(locals, s.Key))
			if v == nil {
				return 0, nil
			}
			locals[s.Target] = v
		case opDotData:
			s := in.stmt.(*dotData)
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
		case opEqual:
			s := in.stmt.(*ir.EqualStmt)
			a, b := st.read(locals, s.A), st.read(locals, s.B)
			if a == nil || b == nil || !equal(a, b) {
				return 0, nil
			}
		case opNotEqual:
			s := in.stmt.(*ir.NotEqualStmt)
			a, b := st.read(locals, s.A), st.read(locals, s.B)
			if a == nil || b == nil || equal(a, b) {
				return 0, nil
			}
		case opCallFunc:
			s := in.stmt.(*callFunc)
			v, err := st.call(locals, s.fn, s.args)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			locals[s.result] = v
		case opCallDynamic:
			s := in.stmt.(*callDynamic)
			fn := st.dynamic(locals, s)
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
		case opCallBuiltin:
			s := in.stmt.(*callBuiltin)
			v, err := st.callBuiltin(locals, s)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			locals[s.result] = v
		case opMakeConst:
			s := in.stmt.(*makeConst)
			locals[s.target] = s.value
		case opResetLocal:
			s := in.stmt.(*ir.ResetLocalStmt)
			locals[s.Target] = nil
		case opIsDefined:
			s := in.stmt.(*ir.IsDefinedStmt)
			if locals[s.Source] == nil {
				return 0, nil
			}
		case opIsUndefined:
			s := in.stmt.(*ir.IsUndefinedStmt)
			if locals[s.Source] != nil {
				return 0, nil
			}
		case opReturnLocal:
			s := in.stmt.(*ir.ReturnLocalStmt)
			st.ret = locals[s.Source]
			return returned, nil
		case opBreak:
			s := in.stmt.(*ir.BreakStmt)
			return int(s.Index), nil
		case opBlock:
			s := in.stmt.(*blockStmt)
			for _, b := range s.blocks {
				r, err := st.exec(locals, b)
				if err != nil || r == returned {
					return r, err
				}
				if r >= 1 {
					return r - 1, nil
				}
			}
		case opBaseFirst:
			// The base document's part leaves the block, or outer ones,
			// as the statements it is made of do; a break out of the
			// block ends the enumeration before the rules, as in
			// topdown.
			s := in.stmt.(*baseFirst)
			rb, err := st.exec(locals, s.base)
			if err != nil || (rb != completed && rb != 0) {
				return rb, err
			}
			for _, b := range s.virtual.blocks {
				r, err := st.exec(locals, b)
				if err != nil || r == returned {
					return r, err
				}
				if r >= 1 {
					return r - 1, nil
				}
			}
			if rb == 0 {
				return 0, nil
			}
		case opScan:
			s := in.stmt.(*scanStmt)
			r, err := st.scan(locals, s)
			if err != nil || r != completed {
				return r, err
			}
		case opNot:
			s := in.stmt.(*notStmt)
			r, err := st.exec(locals, s.body)
			switch {
			case err != nil || r == returned:
				return r, err
			case r == completed:
				return 0, nil
			case r >= 1:
				return r - 1, nil
			}
		case opWith:
			s := in.stmt.(*withStmt)
			r, err := st.with(locals, s)
			switch {
			case err != nil || r == returned:
				return r, err
			case r == 0:
				return 0, nil
			case r >= 1:
				return r - 1, nil
			}
		case opMakeArray:
			s := in.stmt.(*ir.MakeArrayStmt)
			locals[s.Target] = newArray(int(s.Capacity))
		case opMakeObject:
			s := in.stmt.(*ir.MakeObjectStmt)
			locals[s.Target] = &Object{}
		case opMakeSet:
			s := in.stmt.(*ir.MakeSetStmt)
			locals[s.Target] = &Set{}
		case opArrayAppend:
			s := in.stmt.(*ir.ArrayAppendStmt)
			arr, ok := locals[s.Array].(*Array)
			v := st.read(locals, s.Value)
			if !ok || v == nil {
				return 0, nil
			}
			arr.append(v)
		case opSetAdd:
			s := in.stmt.(*ir.SetAddStmt)
			set, ok := locals[s.Set].(*Set)
			v := st.read(locals, s.Value)
			if !ok || v == nil {
				return 0, nil
			}
			set.add(v)
		case opObjectInsert:
			s := in.stmt.(*ir.ObjectInsertStmt)
			obj, ok := locals[s.Object].(*Object)
			k, v := st.read(locals, s.Key), st.read(locals, s.Value)
			if !ok || k == nil || v == nil {
				return 0, nil
			}
			obj.insert(k, v)
		case opObjectInsertOnce:
			s := in.stmt.(*insertOnce)
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
				continue
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
				continue
			}
			obj.insert(k, v)
		case opObjectMerge:
			s := in.stmt.(*ir.ObjectMergeStmt)
			locals[s.Target] = merge(locals[s.A], locals[s.B])
		case opLen:
			s := in.stmt.(*ir.LenStmt)
			n, ok := length(st.read(locals, s.Source))
			if !ok {
				return 0, nil
			}
			locals[s.Target] = intNumber(n)
		case opIsArray:
			s := in.stmt.(*ir.IsArrayStmt)
			if _, ok := st.read(locals, s.Source).(*Array); !ok {
				return 0, nil
			}
		case opIsObject:
			s := in.stmt.(*ir.IsObjectStmt)
			if _, ok := st.read(locals, s.Source).(*Object); !ok {
				return 0, nil
			}
		case opIsSet:
			s := in.stmt.(*ir.IsSetStmt)
			if _, ok := st.read(locals, s.Source).(*Set); !ok {
				return 0, nil
			}
		case opResultSetAdd:
			s := in.stmt.(*ir.ResultSetAddStmt)
			if v := locals[s.Value]; v != nil {
				st.results.add(v)
			}
		case opNop:
		}
	}
	return completed, nil
}

// scan runs the body once per element of a collection; a scalar has none.
// A body left with one level more than its own (break 1) ends the scan; more
// leave the blocks around it.
func (st *state) scan(locals []Value, s *scanStmt) (int, error) {
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
			r, err = st.iteration(locals, s, intNumber(i), c.elems[i])
		}
	case *Object:
		c.sort()
		for i := 0; i < len(c.kvs) && next(); i++ {
			r, err = st.iteration(locals, s, c.kvs[i].k, c.kvs[i].v)
		}
	case *Set:
		c.sort()
		for i := 0; i < len(c.elems) && next(); i++ {
			r, err = st.iteration(locals, s, c.elems[i], c.elems[i])
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

func (st *state) iteration(locals []Value, s *scanStmt, k, v Value) (int, error) {
	if st.steps++; st.steps%checkEvery == 0 {
		if err := st.ctx.Err(); err != nil {
			return 0, cancelled(err)
		}
	}
	locals[s.key], locals[s.value] = k, v
	return st.exec(locals, s.body)
}

func (st *state) with(locals []Value, s *withStmt) (int, error) {
	saved := locals[s.local]
	// The value may be undefined: the planner restores an undefined input
	// with the same statement that replaces it.
	v := st.read(locals, s.value)
	if v == nil && len(s.path) > 0 {
		return 0, nil
	}
	locals[s.local] = upsert(saved, s.path, v)
	st.pushMemo()
	r, err := st.exec(locals, s.body)
	st.popMemo()
	locals[s.local] = saved
	return r, err
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

// call calls fn with args, read from the caller's locals.
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
	for _, b := range fn.blocks {
		r, err := st.exec(frame, b)
		if err != nil {
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
	// A call below may have moved the stack: clear the frame where it is now.
	clear(st.stack[base : base+fn.locals])
	st.stack = st.stack[:base]
	if fn.memo {
		memo[fn.index] = memoEntry{done: true, value: result}
	}
	return result, nil
}

// dynamic is the function a dynamic call names: the planned function whose
// path is the call's (data.pkgs[x].allow with x "a": g0.data.pkgs.a.allow),
// nil if there is none (the plan then reads the base document).
func (st *state) dynamic(locals []Value, s *callDynamic) *function {
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
