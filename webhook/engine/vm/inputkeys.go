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

// inputUses is the scan of one function or plan whose input document is
// the local in: it records the keys its statements look up on it, or that
// they use it otherwise (each by its useInput).
type inputUses struct {
	p  *Program
	in ir.Local
}

func (u *inputUses) block(code []instr) {
	for _, s := range code {
		if u.p.inputAll {
			return
		}
		s.useInput(u)
	}
}

// isIn says whether an operand is the input document.
func (u *inputUses) isIn(o ir.Operand) bool {
	l, ok := o.Value.(ir.Local)
	return ok && l == u.in
}

// key records a key looked up on the input document.
func (u *inputUses) key(k ir.StringIndex) { u.p.inputKeys[u.p.strings[k].(string)] = true }

// all records a use of the whole input document.
func (u *inputUses) all() { u.p.inputAll = true }
