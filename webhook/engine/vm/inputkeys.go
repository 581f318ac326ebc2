package vm

import (
	"sort"

	"github.com/open-policy-agent/opa/v1/ir"
)

// InputKeys says which top-level fields of the input the program can read:
// all is true when some statement uses the input document other than by
// looking up a constant key (iterating it, passing it to a built-in, ...);
// otherwise keys lists the keys looked up. A caller may leave the other
// fields out of the input it converts.
func (p *Program) InputKeys() (keys []string, all bool) {
	if p.inputAll {
		return nil, true
	}
	for k := range p.inputKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, false
}

// scanInputUses records, for one function or plan whose input document is
// the local in, the keys its statements look up on it.
func (p *Program) scanInputUses(in ir.Local, code []instr) {
	isIn := func(o ir.Operand) bool {
		l, ok := o.Value.(ir.Local)
		return ok && l == in
	}
	for _, c := range code {
		if p.inputAll {
			return
		}
		switch s := c.stmt.(type) {
		case *ir.DotStmt:
			if isIn(s.Source) {
				k, ok := s.Key.Value.(ir.StringIndex)
				if !ok {
					p.inputAll = true
					return
				}
				p.inputKeys[p.strings[k].(string)] = true
			}
			if isIn(s.Key) {
				p.inputAll = true
			}
		case *callFunc:
			// A function gets the input as its first argument; its own
			// statements are scanned with it.
			for i, a := range s.args {
				if i != 0 && isIn(a) {
					p.inputAll = true
				}
			}
		case *dotData:
			if isIn(s.Key) {
				p.inputAll = true
			}
		case *callDynamic:
			for i, a := range s.args {
				if i != 0 && isIn(a) {
					p.inputAll = true
				}
			}
			for _, a := range s.path {
				if isIn(a) {
					p.inputAll = true
				}
			}
		case *callBuiltin:
			for _, a := range s.args {
				if isIn(a) {
					p.inputAll = true
				}
			}
		case *blockStmt:
			for _, b := range s.blocks {
				p.scanInputUses(in, b)
			}
		case *baseFirst:
			for _, b := range s.virtual.blocks {
				p.scanInputUses(in, b)
			}
			p.scanInputUses(in, s.base)
		case *scanStmt:
			if s.source == in || s.key == in || s.value == in {
				p.inputAll = true
			}
			p.scanInputUses(in, s.body)
		case *notStmt:
			p.scanInputUses(in, s.body)
		case *withStmt:
			if isIn(s.value) {
				p.inputAll = true
			}
			p.scanInputUses(in, s.body)
		case *ir.AssignVarStmt:
			if isIn(s.Source) || s.Target == in {
				p.inputAll = true
			}
		case *assignOnce:
			if isIn(s.source) || s.target == in {
				p.inputAll = true
			}
		case *ir.ReturnLocalStmt:
			if s.Source == in {
				p.inputAll = true
			}
		case *ir.ResultSetAddStmt:
			if s.Value == in {
				p.inputAll = true
			}
		case *ir.ObjectMergeStmt:
			if s.A == in || s.B == in || s.Target == in {
				p.inputAll = true
			}
		case *makeConst, *undefined, *ir.BreakStmt, *ir.NopStmt, *ir.MakeArrayStmt, *ir.MakeObjectStmt, *ir.MakeSetStmt,
			*ir.ResetLocalStmt, *ir.IsDefinedStmt, *ir.IsUndefinedStmt:
			// These read no operand (or only test definedness).
		default:
			// Any other statement touching the input: be conservative.
			if touches(s, isIn) {
				p.inputAll = true
			}
		}
	}
}

// touches says whether a statement not handled above has the input among
// its operands.
func touches(s ir.Stmt, isIn func(ir.Operand) bool) bool {
	switch s := s.(type) {
	case *ir.EqualStmt:
		return isIn(s.A) || isIn(s.B)
	case *ir.NotEqualStmt:
		return isIn(s.A) || isIn(s.B)
	case *ir.LenStmt:
		return isIn(s.Source)
	case *ir.IsArrayStmt:
		return isIn(s.Source)
	case *ir.IsObjectStmt:
		return isIn(s.Source)
	case *ir.IsSetStmt:
		return isIn(s.Source)
	case *ir.ArrayAppendStmt:
		return isIn(s.Value)
	case *ir.SetAddStmt:
		return isIn(s.Value)
	case *ir.ObjectInsertStmt:
		return isIn(s.Key) || isIn(s.Value)
	case *insertOnce:
		return isIn(s.Key) || isIn(s.Value)
	}
	// anything unknown
	return true
}
