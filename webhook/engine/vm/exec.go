package vm

import (
	"context"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
)

// state is one evaluation.
type state struct {
	ctx     context.Context
	prog    *Program
	results ast.Set
	// memo holds the results of argument-free functions; a with statement
	// pushes a fresh frame, as the values it replaces change them.
	memo [][]memoEntry
	// stack backs the functions' local frames; frame is the plan's.
	stack []*ast.Term
	frame []*ast.Term
	ret   *ast.Term
	// built-in calls
	bctx  *topdown.BuiltinContext
	args  []*ast.Term
	out   *ast.Term
	onOut func(*ast.Term) error
	steps int
	// scan callbacks, made once: see scan.
	loop     loop
	eachPair func(k, v *ast.Term) bool
	eachElem func(t *ast.Term) bool
}

func newState() *state {
	st := &state{results: ast.NewSet()}
	st.eachPair = st.each
	st.eachElem = func(t *ast.Term) bool { return st.each(t, t) }
	st.onOut = func(t *ast.Term) error {
		st.out = t
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
	st.ctx, st.prog, st.ret, st.out, st.bctx = nil, nil, nil, nil, nil
	st.results = nil
	for len(st.memo) > 0 {
		st.popMemo()
	}
	clear(st.stack[:cap(st.stack)])
	st.stack = st.stack[:0]
	clear(st.args[:cap(st.args)])
	st.args = st.args[:0]
	clear(st.frame)
	st.loop = loop{}
	st.steps = 0
}

type memoEntry struct {
	done  bool
	value *ast.Term
}

var trueTerm, falseTerm = ast.BooleanTerm(true), ast.BooleanTerm(false)

// checkEvery is how many loop iterations and calls pass between checks of
// the context.
const checkEvery = 1024

func (st *state) read(locals []*ast.Term, o ir.Operand) *ast.Term {
	switch v := o.Value.(type) {
	case ir.Local:
		return locals[v]
	case ir.StringIndex:
		return st.prog.strings[v]
	case ir.Bool:
		if v {
			return trueTerm
		}
		return falseTerm
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
func (st *state) exec(locals []*ast.Term, stmts []ir.Stmt) (int, error) {
	for _, s := range stmts {
		switch s := s.(type) {
		case *ir.AssignVarStmt:
			locals[s.Target] = st.read(locals, s.Source)
		case *ir.AssignVarOnceStmt:
			v := st.read(locals, s.Source)
			if v == nil {
				return 0, nil
			}
			if cur := locals[s.Target]; cur != nil {
				if ast.Compare(cur.Value, v.Value) != 0 {
					return 0, conflict(st.loc(s.Location), "complete rules must not produce multiple outputs")
				}
				continue
			}
			locals[s.Target] = v
		case *ir.DotStmt:
			v := dot(st.read(locals, s.Source), st.read(locals, s.Key))
			if v == nil {
				return 0, nil
			}
			locals[s.Target] = v
		case *ir.EqualStmt:
			a, b := st.read(locals, s.A), st.read(locals, s.B)
			if a == nil || b == nil || !equal(a, b) {
				return 0, nil
			}
		case *ir.NotEqualStmt:
			a, b := st.read(locals, s.A), st.read(locals, s.B)
			if a == nil || b == nil || equal(a, b) {
				return 0, nil
			}
		case *callFunc:
			v, err := st.callFunc(locals, s)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			locals[s.result] = v
		case *callBuiltin:
			v, err := st.callBuiltin(locals, s)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			locals[s.result] = v
		case *makeConst:
			locals[s.target] = s.value
		case *ir.ResetLocalStmt:
			locals[s.Target] = nil
		case *ir.IsDefinedStmt:
			if locals[s.Source] == nil {
				return 0, nil
			}
		case *ir.IsUndefinedStmt:
			if locals[s.Source] != nil {
				return 0, nil
			}
		case *ir.ReturnLocalStmt:
			st.ret = locals[s.Source]
			return returned, nil
		case *ir.BreakStmt:
			return int(s.Index), nil
		case *blockStmt:
			for _, b := range s.blocks {
				r, err := st.exec(locals, b)
				if err != nil || r == returned {
					return r, err
				}
				if r >= 1 {
					return r - 1, nil
				}
			}
		case *scanStmt:
			r, err := st.scan(locals, s)
			if err != nil || r != completed {
				return r, err
			}
		case *notStmt:
			r, err := st.exec(locals, s.body)
			switch {
			case err != nil || r == returned:
				return r, err
			case r == completed:
				return 0, nil
			case r >= 1:
				return r - 1, nil
			}
		case *withStmt:
			r, err := st.with(locals, s)
			switch {
			case err != nil || r == returned:
				return r, err
			case r == 0:
				return 0, nil
			case r >= 1:
				return r - 1, nil
			}
		case *ir.MakeArrayStmt:
			locals[s.Target] = ast.NewTerm(ast.NewArrayWithCapacity(int(s.Capacity)))
		case *ir.MakeObjectStmt:
			locals[s.Target] = ast.NewTerm(ast.NewObject())
		case *ir.MakeSetStmt:
			locals[s.Target] = ast.NewTerm(ast.NewSet())
		case *ir.ArrayAppendStmt:
			arr, ok := locals[s.Array].Value.(*ast.Array)
			v := st.read(locals, s.Value)
			if !ok || v == nil {
				return 0, nil
			}
			locals[s.Array] = ast.NewTerm(arr.Append(v))
		case *ir.SetAddStmt:
			set, ok := locals[s.Set].Value.(ast.Set)
			v := st.read(locals, s.Value)
			if !ok || v == nil {
				return 0, nil
			}
			set.Add(v)
		case *ir.ObjectInsertStmt:
			obj, ok := locals[s.Object].Value.(ast.Object)
			k, v := st.read(locals, s.Key), st.read(locals, s.Value)
			if !ok || k == nil || v == nil {
				return 0, nil
			}
			obj.Insert(k, v)
		case *ir.ObjectInsertOnceStmt:
			obj, ok := locals[s.Object].Value.(ast.Object)
			k, v := st.read(locals, s.Key), st.read(locals, s.Value)
			if !ok || k == nil || v == nil {
				return 0, nil
			}
			if cur := obj.Get(k); cur != nil {
				if !equal(cur, v) {
					return 0, conflict(st.loc(s.Location), "object keys must be unique")
				}
				continue
			}
			obj.Insert(k, v)
		case *ir.ObjectMergeStmt:
			v, err := st.merge(locals[s.A], locals[s.B], s.Location)
			if err != nil {
				return 0, err
			}
			locals[s.Target] = v
		case *ir.LenStmt:
			n, ok := length(st.read(locals, s.Source))
			if !ok {
				return 0, nil
			}
			locals[s.Target] = ast.InternedTerm(n)
		case *ir.IsArrayStmt:
			if v := st.read(locals, s.Source); v == nil {
				return 0, nil
			} else if _, ok := v.Value.(*ast.Array); !ok {
				return 0, nil
			}
		case *ir.IsObjectStmt:
			if v := st.read(locals, s.Source); v == nil {
				return 0, nil
			} else if _, ok := v.Value.(ast.Object); !ok {
				return 0, nil
			}
		case *ir.IsSetStmt:
			if v := st.read(locals, s.Source); v == nil {
				return 0, nil
			} else if _, ok := v.Value.(ast.Set); !ok {
				return 0, nil
			}
		case *ir.ResultSetAddStmt:
			if v := locals[s.Value]; v != nil {
				st.results.Add(v)
			}
		case *ir.NopStmt:
		}
	}
	return completed, nil
}

// scan runs the body once per element of a collection; a scalar has none.
// A body left with one level more than its own (break 1) ends the scan; more
// leave the blocks around it.
func (st *state) scan(locals []*ast.Term, s *scanStmt) (int, error) {
	src := locals[s.source]
	if src == nil {
		return completed, nil
	}
	// The iteration callbacks are made once per state; the loop's own
	// variables live in st.loop, saved and restored around nested scans.
	saved := st.loop
	st.loop = loop{locals: locals, stmt: s, r: completed}
	switch c := src.Value.(type) {
	case *ast.Array:
		for i := 0; i < c.Len(); i++ {
			if st.each(ast.InternedTerm(i), c.Elem(i)) {
				break
			}
		}
	case ast.Object:
		c.Until(st.eachPair)
	case ast.Set:
		c.Until(st.eachElem)
	}
	r, err := st.loop.r, st.loop.err
	st.loop = saved
	switch {
	case err != nil || r == returned:
		return r, err
	case r >= 2:
		return r - 2, nil
	}
	return completed, nil
}

// loop is the state of the innermost scan.
type loop struct {
	locals []*ast.Term
	stmt   *scanStmt
	r      int
	err    error
}

// each runs the innermost scan's body for one element; true stops the scan.
func (st *state) each(k, v *ast.Term) bool {
	if st.steps++; st.steps%checkEvery == 0 {
		if st.loop.err = st.ctx.Err(); st.loop.err != nil {
			return true
		}
	}
	l := st.loop
	l.locals[l.stmt.key], l.locals[l.stmt.value] = k, v
	r, err := st.exec(l.locals, l.stmt.body)
	st.loop.r, st.loop.err = r, err
	return err != nil || r == returned || r >= 1
}

func (st *state) with(locals []*ast.Term, s *withStmt) (int, error) {
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
func upsert(doc *ast.Term, path []*ast.Term, value *ast.Term) *ast.Term {
	if len(path) == 0 {
		return value
	}
	obj := ast.NewObject()
	if doc != nil {
		if cur, ok := doc.Value.(ast.Object); ok {
			cur.Foreach(func(k, v *ast.Term) { obj.Insert(k, v) })
		}
	}
	obj.Insert(path[0], upsert(obj.Get(path[0]), path[1:], value))
	return ast.NewTerm(obj)
}

func (st *state) merge(a, b *ast.Term, loc ir.Location) (*ast.Term, error) {
	if a == nil {
		return b, nil
	}
	if b == nil {
		return a, nil
	}
	oa, ok1 := a.Value.(ast.Object)
	ob, ok2 := b.Value.(ast.Object)
	if !ok1 || !ok2 {
		return nil, conflict(st.loc(loc), "object merge of a non-object value")
	}
	merged, ok := oa.MergeWith(ob, func(v1, v2 *ast.Term) (*ast.Term, bool) {
		o1, ok1 := v1.Value.(ast.Object)
		o2, ok2 := v2.Value.(ast.Object)
		if !ok1 || !ok2 {
			return v1, false
		}
		m, ok := o1.Merge(o2)
		if !ok {
			return v1, false
		}
		return ast.NewTerm(m), false
	})
	if !ok {
		return nil, conflict(st.loc(loc), "object merge conflict")
	}
	return ast.NewTerm(merged), nil
}

func (st *state) callFunc(locals []*ast.Term, s *callFunc) (*ast.Term, error) {
	fn := s.fn
	memo := st.memo[len(st.memo)-1]
	if fn.memo && memo[fn.index].done {
		return memo[fn.index].value, nil
	}
	if st.steps++; st.steps%checkEvery == 0 {
		if err := st.ctx.Err(); err != nil {
			return nil, err
		}
	}
	base := len(st.stack)
	st.stack = append(st.stack, make([]*ast.Term, fn.locals)...)
	frame := st.stack[base : base+fn.locals : base+fn.locals]
	for i, p := range fn.params {
		frame[p] = st.read(locals, s.args[i])
	}
	var result *ast.Term
	for _, b := range fn.blocks {
		r, err := st.exec(frame, b)
		if err != nil {
			return nil, err
		}
		if r == returned {
			result = st.ret
			break
		}
	}
	clear(frame)
	st.stack = st.stack[:base]
	if fn.memo {
		memo[fn.index] = memoEntry{done: true, value: result}
	}
	return result, nil
}

func (st *state) callBuiltin(locals []*ast.Term, s *callBuiltin) (*ast.Term, error) {
	st.args = st.args[:0]
	for _, a := range s.args {
		v := st.read(locals, a)
		if v == nil {
			return nil, nil
		}
		st.args = append(st.args, v)
	}
	st.out = nil
	var err error
	if s.bare {
		err = s.fn(s.bctx, st.args, st.onOut)
	} else {
		if st.bctx == nil {
			st.bctx = &topdown.BuiltinContext{
				Context: st.ctx,
				Time:    ast.NewTerm(ast.Number(strconv.FormatInt(time.Now().UnixNano(), 10))),
				Cache:   builtins.Cache{},
			}
		}
		bctx := *st.bctx
		bctx.Location = s.loc
		err = s.fn(bctx, st.args, st.onOut)
	}
	if err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			return nil, halt.Err
		}
		// As topdown without strict built-in errors: the call is undefined.
		return nil, nil
	}
	return st.out, nil
}

func dot(src, key *ast.Term) *ast.Term {
	if src == nil || key == nil {
		return nil
	}
	switch c := src.Value.(type) {
	case ast.Object:
		return c.Get(key)
	case *ast.Array:
		n, ok := key.Value.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= c.Len() {
			return nil
		}
		return c.Elem(i)
	case ast.Set:
		if c.Contains(key) {
			return key
		}
	}
	return nil
}

func equal(a, b *ast.Term) bool {
	if a == b {
		return true
	}
	if sa, ok := a.Value.(ast.String); ok {
		sb, ok := b.Value.(ast.String)
		return ok && sa == sb
	}
	return ast.Compare(a.Value, b.Value) == 0
}

func length(t *ast.Term) (int, bool) {
	if t == nil {
		return 0, false
	}
	switch v := t.Value.(type) {
	case ast.String:
		return utf8.RuneCountInString(string(v)), true
	case *ast.Array:
		return v.Len(), true
	case ast.Object:
		return v.Len(), true
	case ast.Set:
		return v.Len(), true
	}
	return 0, true
}
