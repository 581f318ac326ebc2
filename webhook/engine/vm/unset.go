package vm

import (
	"reflect"

	"github.com/open-policy-agent/opa/v1/ir"
)

// unsetRead finds a statement reading a local that nothing before it sets.
// OPA's planner makes such plans: a with's value that uses the variables of
// its rule is planned into the functions of the rules it replaces, where
// those variables are locals of no one, or left over from another rule's
// body. Topdown reads the value.
//
// A function's blocks are its rules' bodies: a body reads what it sets,
// the parameters, and the locals the rules share (the result, and the
// value of a rule and its else branches, which a body resets or sets
// once).
func unsetRead(table rows, blocks []*ir.Block, params ...ir.Local) (ir.Location, bool) {
	f := &flow{rows: table, sharing: true, shared: map[ir.Local]bool{}}
	for _, p := range params {
		f.shared[p] = true
	}
	for _, b := range blocks {
		f.block(b)
	}
	f.sharing = false
	for _, b := range blocks {
		f.set = map[ir.Local]bool{}
		if f.block(b); f.bad != nil {
			return *f.bad, true
		}
	}
	return ir.Location{}, false
}

// flow is unsetRead's walk of a function's blocks, in two passes: the
// first (sharing) gathers the locals the rules share, the second finds the
// first read of a local neither set before nor shared. A statement's row
// tells it what the statement does (kind.flow).
type flow struct {
	rows        rows
	sharing     bool
	shared, set map[ir.Local]bool
	bad         *ir.Location
}

func (f *flow) block(b *ir.Block) {
	if b == nil {
		return
	}
	for _, s := range b.Stmts {
		if r, ok := f.rows[reflect.TypeOf(s)]; ok {
			r.flowStmt(s, f)
		}
	}
}

// reads: the statement at loc reads the operands.
func (f *flow) reads(loc ir.Location, ops ...ir.Operand) {
	if f.sharing {
		return
	}
	for _, o := range ops {
		if l, ok := o.Value.(ir.Local); ok && !f.set[l] && !f.shared[l] && f.bad == nil {
			f.bad = &loc
		}
	}
}

// sets: the statement sets the locals.
func (f *flow) sets(locals ...ir.Local) {
	if f.sharing {
		return
	}
	for _, l := range locals {
		f.set[l] = true
	}
}

// shares: the rules of a function share the local (a rule's value, the
// function's result).
func (f *flow) shares(l ir.Local) {
	if f.sharing {
		f.shared[l] = true
	}
}

// branches: the statement runs the blocks, a block statement's (rules'
// bodies, looked into by both passes).
func (f *flow) branches(blocks []*ir.Block) {
	for _, b := range blocks {
		f.block(b)
	}
}

// body: the statement runs the block (a scan's, a not's, a with's).
func (f *flow) body(b *ir.Block) {
	if !f.sharing {
		f.block(b)
	}
}
