package vm

import "github.com/open-policy-agent/opa/v1/ir"

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
func unsetRead(blocks []*ir.Block, params ...ir.Local) (ir.Location, bool) {
	shared := map[ir.Local]bool{}
	for _, p := range params {
		shared[p] = true
	}
	var sharedBy func(b *ir.Block)
	sharedBy = func(b *ir.Block) {
		if b == nil {
			return
		}
		for _, s := range b.Stmts {
			switch s := s.(type) {
			case *ir.AssignVarOnceStmt:
				shared[s.Target] = true
			case *ir.ResetLocalStmt:
				shared[s.Target] = true
			case *ir.MakeObjectStmt:
				shared[s.Target] = true
			case *ir.MakeSetStmt:
				shared[s.Target] = true
			case *ir.ReturnLocalStmt:
				shared[s.Source] = true
			case *ir.BlockStmt:
				for _, b := range s.Blocks {
					sharedBy(b)
				}
			}
		}
	}
	var set map[ir.Local]bool
	var bad *ir.Location
	use := func(loc ir.Location, ops ...ir.Operand) {
		for _, o := range ops {
			if l, ok := o.Value.(ir.Local); ok && !set[l] && !shared[l] && bad == nil {
				bad = &loc
			}
		}
	}
	var walk func(b *ir.Block)
	walk = func(b *ir.Block) {
		if b == nil {
			return
		}
		for _, s := range b.Stmts {
			switch s := s.(type) {
			case *ir.AssignVarStmt:
				use(s.Location, s.Source)
				set[s.Target] = true
			case *ir.AssignVarOnceStmt:
				use(s.Location, s.Source)
				set[s.Target] = true
			case *ir.DotStmt:
				use(s.Location, s.Source, s.Key)
				set[s.Target] = true
			case *ir.CallStmt:
				use(s.Location, s.Args...)
				set[s.Result] = true
			case *ir.CallDynamicStmt:
				use(s.Location, s.Path...)
				for _, a := range s.Args {
					use(s.Location, ir.Operand{Value: a})
				}
				set[s.Result] = true
			case *ir.EqualStmt:
				use(s.Location, s.A, s.B)
			case *ir.NotEqualStmt:
				use(s.Location, s.A, s.B)
			case *ir.LenStmt:
				use(s.Location, s.Source)
				set[s.Target] = true
			case *ir.IsArrayStmt:
				use(s.Location, s.Source)
			case *ir.IsObjectStmt:
				use(s.Location, s.Source)
			case *ir.IsSetStmt:
				use(s.Location, s.Source)
			case *ir.ArrayAppendStmt:
				use(s.Location, s.Value)
			case *ir.SetAddStmt:
				use(s.Location, s.Value)
			case *ir.ObjectInsertStmt:
				use(s.Location, s.Key, s.Value)
			case *ir.ObjectInsertOnceStmt:
				use(s.Location, s.Key, s.Value)
			case *ir.ObjectMergeStmt:
				set[s.Target] = true
			case *ir.ResultSetAddStmt:
				use(s.Location, ir.Operand{Value: s.Value})
			case *ir.MakeNumberRefStmt:
				set[s.Target] = true
			case *ir.MakeNumberIntStmt:
				set[s.Target] = true
			case *ir.AssignIntStmt:
				set[s.Target] = true
			case *ir.MakeNullStmt:
				set[s.Target] = true
			case *ir.MakeArrayStmt:
				set[s.Target] = true
			case *ir.MakeObjectStmt:
				set[s.Target] = true
			case *ir.MakeSetStmt:
				set[s.Target] = true
			case *ir.ResetLocalStmt:
				set[s.Target] = true
			case *ir.ScanStmt:
				use(s.Location, ir.Operand{Value: s.Source})
				set[s.Key], set[s.Value] = true, true
				walk(s.Block)
			case *ir.BlockStmt:
				for _, b := range s.Blocks {
					walk(b)
				}
			case *ir.NotStmt:
				walk(s.Block)
			case *ir.WithStmt:
				use(s.Location, s.Value)
				set[s.Local] = true
				walk(s.Block)
			}
		}
	}
	for _, b := range blocks {
		sharedBy(b)
	}
	for _, b := range blocks {
		set = map[ir.Local]bool{}
		if walk(b); bad != nil {
			return *bad, true
		}
	}
	return ir.Location{}, false
}
