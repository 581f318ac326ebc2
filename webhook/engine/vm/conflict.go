package vm

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// conflictFound is a complete rule or function producing a second value in
// fn; the call of fn turns it into topdown's error (conflictError).
type conflictFound struct {
	fn  *function
	loc ir.Location
	// key is the key of a rule that names it (p["a"] := 1), nil for the
	// function's own value; partial: a rule with a variable in its key
	// (p[k] := v) gave a key two values.
	key     Value
	partial bool
}

func (c *conflictFound) Error() string { return "conflicting values" }

// maxConflicts is how many values a conflict error lists, as topdown.
const maxConflicts = 10

// collector gathers, by rule, the values a function's rules produce (at
// key, when set).
type collector struct {
	fn    *function
	key   Value
	rules []ruleValues
	// inserts: gather every insertion into the function's object instead.
	inserts    bool
	insertions []insertion
}

type insertion struct {
	k, v   Value
	loc    ir.Location
	ground bool
}

type ruleValues struct {
	loc    ir.Location
	values []Value
}

func (c *collector) add(v Value, loc ir.Location) {
	for i := range c.rules {
		if samePlace(c.rules[i].loc, loc) {
			c.rules[i].values = append(c.rules[i].values, v)
			return
		}
	}
	c.rules = append(c.rules, ruleValues{loc: loc, values: []Value{v}})
}

func samePlace(a, b ir.Location) bool {
	return a.File == b.File && a.Row == b.Row && a.Col == b.Col
}

// conflictError is the error topdown gives for the conflict cf in the
// function s calls: the function's rules are run again, and the message
// lists the values that differ from the first one, each with its rule's
// place, as topdown's does. Rules are taken in the order of their places,
// which is topdown's order within a file.
func (st *state) conflictError(locals []Value, fn *function, args []ir.Operand, cf *conflictFound) error {
	if cf.partial {
		return st.partialConflict(locals, fn, args, cf)
	}
	c := collector{fn: fn, key: cf.key}
	st.rerun(locals, fn, args, &c)

	type found struct {
		v   Value
		loc ir.Location
	}
	var values []found
	more := false
	slices.SortStableFunc(c.rules, func(a, b ruleValues) int { return st.comparePlaces(a.loc, b.loc) })
rules:
	for _, r := range c.rules {
		for _, v := range r.values {
			if len(values) > 0 && equal(values[0].v, v) {
				continue
			}
			if len(values) == maxConflicts {
				more = true
				break rules
			}
			values = append(values, found{v, r.loc})
			if len(values) > 1 {
				// a rule ends at its first conflicting value
				break
			}
		}
	}

	msg := "rule " + fn.rule + " produced conflicting values"
	switch {
	case cf.key != nil:
		ref := append(fn.ref[:len(fn.ref):len(fn.ref)], toTerm(cf.key))
		msg = "rule " + ref.String() + " produced conflicting values"
	case fn.function:
		msg = "function " + fn.rule + " produced conflicting values for the same inputs"
	}
	if len(values) < 2 {
		// not found again (a non-deterministic built-in)
		return &topdown.Error{Code: topdown.ConflictErr, Message: msg, Location: st.loc(cf.loc)}
	}
	raisedAt := values[1].loc
	slices.SortStableFunc(values, func(a, b found) int { return st.comparePlaces(a.loc, b.loc) })
	var b strings.Builder
	b.WriteString(msg)
	b.WriteByte(':')
	for _, v := range values {
		b.WriteString("\n  ")
		b.WriteString(valueText(v.v))
		b.WriteString(" at ")
		loc := st.loc(v.loc)
		if loc.File != "" {
			b.WriteString(loc.File + ":" + strconv.Itoa(loc.Row))
		} else {
			b.WriteString(strconv.Itoa(loc.Row) + ":" + strconv.Itoa(loc.Col))
		}
	}
	if more {
		b.WriteString("\n  ...")
	}
	return &topdown.Error{Code: topdown.ConflictErr, Message: b.String(), Location: st.loc(raisedAt)}
}

// partialConflict is topdown's error for a key given two values by the
// rules of a partial object: "object keys must be unique", at the rule
// that found the key taken. Topdown runs the rules with a variable in
// their key first, in the order of their places, then those that name
// theirs, by key; the rules are run again to find which that is.
func (st *state) partialConflict(locals []Value, fn *function, args []ir.Operand, cf *conflictFound) error {
	c := collector{fn: fn, inserts: true}
	st.rerun(locals, fn, args, &c)
	in := c.insertions
	slices.SortStableFunc(in, func(a, b insertion) int {
		switch {
		case a.ground != b.ground:
			if a.ground {
				return 1
			}
			return -1
		case a.ground:
			if c := compare(a.k, b.k); c != 0 {
				return c
			}
		}
		return st.comparePlaces(a.loc, b.loc)
	})
	at := cf.loc
	seen := &Object{}
	for _, x := range in {
		if cur := seen.Get(x.k); cur != nil {
			if !equal(cur, x.v) {
				at = x.loc
				break
			}
			continue
		}
		seen.insert(x.k, x.v)
	}
	return conflict(st.loc(at), "object keys must be unique")
}

// rerun runs fn again, with the same arguments, its values gathered in c
// instead of conflicting. What else goes wrong is left out: the conflict is
// the error.
func (st *state) rerun(locals []Value, fn *function, args []ir.Operand, c *collector) {
	saved, savedErr := st.collect, st.builtinErr
	st.collect = c
	defer func() { st.collect, st.builtinErr = saved, savedErr }()
	base := len(st.stack)
	st.stack = append(st.stack, make([]Value, fn.locals)...)
	frame := st.stack[base : base+fn.locals : base+fn.locals]
	for i, p := range fn.params {
		frame[p] = st.read(locals, args[i])
	}
	st.locals = frame
	for _, b := range fn.blocks {
		r, err := st.exec(b)
		if err != nil || r == returned {
			break
		}
	}
	st.locals = locals
	clear(st.stack[base : base+fn.locals])
	st.stack = st.stack[:base]
}

func (st *state) comparePlaces(a, b ir.Location) int {
	fa, fb := st.fileName(a.File), st.fileName(b.File)
	if c := strings.Compare(fa, fb); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Row, b.Row); c != 0 {
		return c
	}
	return cmp.Compare(a.Col, b.Col)
}

func (st *state) fileName(i int) string {
	if i >= 0 && i < len(st.prog.files) {
		return st.prog.files[i]
	}
	return ""
}

// valueText is a value as topdown's conflict errors print it: on one
// line, cut at 80 characters.
func valueText(v Value) string {
	text := strings.Join(strings.Fields(ToAST(v).String()), " ")
	var n int
	for i := range text {
		if n == 80 {
			return text[:i] + "..."
		}
		n++
	}
	return text
}
