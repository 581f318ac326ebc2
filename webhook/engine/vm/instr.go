package vm

import "github.com/open-policy-agent/opa/v1/ir"

// instr is a statement with its kind as a small integer: exec switches on
// it (a jump table) and asserts the one type it names, cheaper than a type
// switch over every statement type.
type instr struct {
	op   opcode
	stmt ir.Stmt
}

type opcode uint8

const (
	opInvalid opcode = iota
	opAssignVar
	opAssignVarOnce
	opDot
	opEqual
	opNotEqual
	opCallFunc
	opCallBuiltin
	opMakeConst
	opResetLocal
	opIsDefined
	opIsUndefined
	opReturnLocal
	opBreak
	opBlock
	opScan
	opNot
	opWith
	opMakeArray
	opMakeObject
	opMakeSet
	opArrayAppend
	opSetAdd
	opObjectInsert
	opObjectInsertOnce
	opObjectMerge
	opLen
	opIsArray
	opIsObject
	opIsSet
	opResultSetAdd
	opNop
	opUndefined
	opCallDynamic
	opBaseFirst
	opDotData
)

func opOf(s ir.Stmt) opcode {
	switch s.(type) {
	case *ir.AssignVarStmt:
		return opAssignVar
	case *assignOnce:
		return opAssignVarOnce
	case *undefined:
		return opUndefined
	case *callDynamic:
		return opCallDynamic
	case *baseFirst:
		return opBaseFirst
	case *dotData:
		return opDotData
	case *ir.DotStmt:
		return opDot
	case *ir.EqualStmt:
		return opEqual
	case *ir.NotEqualStmt:
		return opNotEqual
	case *callFunc:
		return opCallFunc
	case *callBuiltin:
		return opCallBuiltin
	case *makeConst:
		return opMakeConst
	case *ir.ResetLocalStmt:
		return opResetLocal
	case *ir.IsDefinedStmt:
		return opIsDefined
	case *ir.IsUndefinedStmt:
		return opIsUndefined
	case *ir.ReturnLocalStmt:
		return opReturnLocal
	case *ir.BreakStmt:
		return opBreak
	case *blockStmt:
		return opBlock
	case *scanStmt:
		return opScan
	case *notStmt:
		return opNot
	case *withStmt:
		return opWith
	case *ir.MakeArrayStmt:
		return opMakeArray
	case *ir.MakeObjectStmt:
		return opMakeObject
	case *ir.MakeSetStmt:
		return opMakeSet
	case *ir.ArrayAppendStmt:
		return opArrayAppend
	case *ir.SetAddStmt:
		return opSetAdd
	case *ir.ObjectInsertStmt:
		return opObjectInsert
	case *insertOnce:
		return opObjectInsertOnce
	case *ir.ObjectMergeStmt:
		return opObjectMerge
	case *ir.LenStmt:
		return opLen
	case *ir.IsArrayStmt:
		return opIsArray
	case *ir.IsObjectStmt:
		return opIsObject
	case *ir.IsSetStmt:
		return opIsSet
	case *ir.ResultSetAddStmt:
		return opResultSetAdd
	case *ir.NopStmt:
		return opNop
	}
	return opInvalid
}
