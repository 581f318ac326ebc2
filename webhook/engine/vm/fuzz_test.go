package vm_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// FuzzPolicyAgrees: for any policy a grammar makes of the fuzzer's bytes
// (rules of every kind, bodies that iterate, negate, quantify and replace
// input, comprehensions, a set of built-ins, literals of every kind), the IR
// evaluator gives topdown's result, or an error of the same kind.
func FuzzPolicyAgrees(f *testing.F) {
	for _, seed := range []string{
		"", "\x00", "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a",
		"\x03\x05\x07\x11\x13\x17\x1d\x1f\x25\x29\x2b\x2f\x35\x3b\x3d\x43\x47\x49\x4f\x53",
		strings.Repeat("\x09\x1b\x2d\x3f\x51\x63\x75\x87\x99\xab\xbd\xcf\xe1\xf3", 6),
		strings.Repeat("\xff\x80\x40\x20\x10\x08\x04\x02\x01", 8),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g := &policyGen{in: b}
		src, input, strict := g.policy()
		c, err := compileRego(map[string]string{"t.rego": src}, false)
		if err != nil {
			return // not a policy OPA accepts
		}
		if aliasedNumberKeys(c) {
			// Topdown loses a partial object's key when two rules spell
			// it as different numbers (p[2.00] and p[2], p[-0] and p[0]): with
			// p[2.00] := 1 if false and p[2] := 1 if true, data.t.p is
			// undefined or {}, not {2: 1}. Nothing to compare with.
			return
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		p, err := programFor(ctx, c, "data.t")
		if err != nil {
			if strings.HasPrefix(err.Error(), "planning: ") || errors.Is(err, vm.ErrUnsupported) {
				return // the engine leaves these to topdown
			}
			t.Fatalf("%v\n%s", err, src)
		}
		in := ast.MustParseTerm(input).Value
		data := ast.MustParseTerm(fuzzData).Value
		// Every rule body runs, as the plan runs them all: topdown's
		// index and early exit would skip some (a body with a condition
		// on a missing input field), and the errors (conflicts, built-ins'
		// in strict mode) they would raise with them.
		eopts := []rego.EvalOption{rego.EvalRuleIndexing(false), rego.EvalEarlyExit(false)}
		td := viaTopdownWith(ctx, c, "data.t", in, data, eopts, rego.StrictBuiltinErrors(strict))
		v := viaVM(ctx, p, in, data, vm.EvalOptions{StrictBuiltinErrors: strict})
		if td.code() == topdown.CancelErr || v.code() == topdown.CancelErr ||
			td.code() == topdown.InternalErr || errors.Is(td.err, errTopdownPanicked) {
			// too slow to compare, or nothing to compare with: topdown
			// fails on some shadowed variables and panics in walk on
			// objects with composite keys
			return
		}
		if strict && td.code() != v.code() && (builtinFailure(td) || builtinFailure(v)) {
			// The planner leaves out what cannot change a result (a
			// comprehension as a condition is always true), and the
			// errors of the built-ins in it with it: the results must
			// agree, the errors of built-ins may not.
			td = viaTopdown(ctx, c, "data.t", in, data)
			v = viaVM(ctx, p, in, data, vm.EvalOptions{})
		}
		if (td.err == nil) != (v.err == nil) && (uniqueKeys(td) || uniqueKeys(v)) {
			// Topdown does not build an object comprehension it unifies
			// with a value of another kind ({k: v | ...} == "a"), nor
			// finds its keys' conflicts; the plan builds it first.
			return
		}
		// Conflict errors agree on the rule; the place and the values
		// listed may not: when a function's value feeds a call of itself,
		// topdown goes on with the first value before it finds the
		// conflict, and lists the values of both calls.
		// With two conflicts, which one is found first may differ too:
		// topdown goes on with the rest of the query with a function's
		// (or, under with, a rule's) first value before it tries the
		// other rules, so a conflict further on can come first. A rule
		// the IR evaluator names must then conflict in topdown too,
		// queried alone.
		conflictsAgree := func() bool {
			if conflictRule(td.err) == conflictRule(v.err) || functionConflict(td.err) || functionConflict(v.err) {
				return true
			}
			m := conflictingRule.FindStringSubmatch(conflictRule(v.err))
			if m == nil {
				return false
			}
			alone := viaTopdownWith(ctx, c, m[1], in, data, eopts, rego.StrictBuiltinErrors(strict))
			return alone.code() == topdown.ConflictErr && conflictRule(alone.err) == conflictRule(v.err)
		}
		if td.code() != v.code() || td.value != v.value || (td.code() == topdown.ConflictErr && !conflictsAgree()) {
			t.Fatalf("the evaluators disagree (strict %v) on\n%s\ninput %s\n vm:      %v\n topdown: %v", strict, src, input, v, td)
		}
	})
}

// aliasedNumberKeys: two rules' heads have keys that are the same number
// written differently (2 and 2.00, 0 and -0).
func aliasedNumberKeys(c *ast.Compiler) bool {
	spelled := map[string]map[string]bool{}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			for i, t := range r.Head.Ref() {
				n, ok := t.Value.(ast.Number)
				if !ok || i == 0 {
					continue
				}
				f, _ := n.Float64()
				if f == 0 {
					f = 0 // -0 too
				}
				key := r.Head.Ref()[:i].String() + "/" + strconv.FormatFloat(f, 'g', -1, 64)
				if spelled[key] == nil {
					spelled[key] = map[string]bool{}
				}
				spelled[key][n.String()] = true
				if len(spelled[key]) > 1 {
					return true
				}
			}
		}
	}
	return false
}

// conflictRule is the first line of a conflict error's message.
func conflictRule(err error) string {
	var te *topdown.Error
	if !errors.As(err, &te) {
		return err.Error()
	}
	line, _, _ := strings.Cut(te.Message, "\n")
	return line
}

// conflictingRule finds the rule a conflict error names.
var conflictingRule = regexp.MustCompile(`^rule (data\.[^ ]+) produced conflicting values`)

// functionConflict: err is a function's conflict (two values for the same
// arguments).
func functionConflict(err error) bool {
	return err != nil && strings.HasPrefix(conflictRule(err), "function ")
}

// uniqueKeys: the outcome is a conflict of an object's keys.
func uniqueKeys(o outcome) bool {
	return o.code() == topdown.ConflictErr && conflictRule(o.err) == "object keys must be unique"
}

// builtinFailure: the outcome is a built-in's error (strict mode's).
func builtinFailure(o outcome) bool {
	return o.code() == topdown.BuiltinErr || o.code() == topdown.TypeErr
}

const fuzzData = `{"d": {"k": [1, 2, "a"], "m": {"x": 1, "y": [null]}, "2": "two"}}`

// policyGen writes a Rego module as the bytes it reads choose; past their
// end every choice is the first, which always ends the policy.
type policyGen struct {
	in  []byte
	pos int
	// vars in scope; rules defined so far (a rule refers only to rules
	// defined before it: no recursion)
	vars  []string
	rules []genRule
	nvars int
	depth int
	// nest counts the comprehensions and every bodies around: OPA's
	// compiler takes exponential time on deep ones.
	nest    int
	current string
}

type genRule struct {
	name     string
	kind     int // ruleComplete, ruleSet, ruleObject, ruleFunc
	defaults bool
}

const (
	ruleComplete = iota
	ruleSet
	ruleObject
	ruleFunc
)

func (g *policyGen) pick(n int) int {
	if g.pos >= len(g.in) {
		return 0
	}
	b := g.in[g.pos]
	g.pos++
	return int(b) % n
}

func (g *policyGen) policy() (src, input string, strict bool) {
	strict = g.pick(4) == 1
	var b strings.Builder
	b.WriteString("package t\n\n")
	for i := range 1 + g.pick(5) {
		b.WriteString(g.rule(i))
		b.WriteString("\n")
	}
	// The input is JSON, as an admission request is.
	input = fmt.Sprintf(`{"a": %s, "b": %s, "xs": %s, "o": %s, "s": %s, "n": %s}`,
		g.json(0), g.json(1), g.jsonArray(2), g.jsonObject(2), g.str(), g.number())
	return b.String(), input, strict
}

var ruleNames = []string{"p", "q", "r", "s", "u", "w"}

func (g *policyGen) lookup(name string) *genRule {
	for i := range g.rules {
		if g.rules[i].name == name {
			return &g.rules[i]
		}
	}
	return nil
}

func (g *policyGen) rule(i int) string {
	name := ruleNames[g.pick(len(ruleNames))]
	r := g.lookup(name)
	if r == nil {
		g.rules = append(g.rules, genRule{name: name, kind: g.pick(4)})
		r = &g.rules[len(g.rules)-1]
	}
	kind := r.kind
	g.current, g.vars, g.depth = name, nil, 0
	defer func() { g.current = "" }()
	switch kind {
	case ruleComplete:
		switch g.pick(4) {
		case 1:
			if !r.defaults {
				r.defaults = true
				return fmt.Sprintf("default %s := %s\n", name, g.literal(1))
			}
		case 2:
			out := fmt.Sprintf("%s := %s if {\n%s}", name, g.term(), g.body())
			for range 1 + g.pick(2) {
				g.vars = nil
				out += fmt.Sprintf(" else := %s if {\n%s}", g.term(), g.body())
			}
			g.vars = nil
			return out + fmt.Sprintf(" else := %s\n", g.literal(1))
		case 3:
			return fmt.Sprintf("%s := %s\n", name, g.term())
		}
		body := g.body()
		return fmt.Sprintf("%s := %s if {\n%s}\n", name, g.term(), body)
	case ruleSet:
		body := g.body()
		return fmt.Sprintf("%s contains %s if {\n%s}\n", name, g.term(), body)
	case ruleObject:
		body := g.body()
		return fmt.Sprintf("%s[%s] := %s if {\n%s}\n", name, g.key(), g.term(), body)
	}
	// a function of one argument
	g.vars = []string{"x"}
	if g.pick(3) == 1 && !r.defaults {
		r.defaults = true
		return fmt.Sprintf("default %s(_) := %s\n", name, g.literal(1))
	}
	body := g.body()
	return fmt.Sprintf("%s(x) := %s if {\n%s}\n", name, g.term(), body)
}

func (g *policyGen) newVar() string {
	g.nvars++
	return fmt.Sprintf("v%d", g.nvars)
}

func (g *policyGen) body() string {
	var b strings.Builder
	before := len(g.vars)
	for range 1 + g.pick(3) {
		b.WriteString("\t")
		b.WriteString(g.stmt())
		b.WriteString("\n")
	}
	// every variable a body introduces is used (OPA refuses unused ones)
	for _, v := range g.vars[min(before, len(g.vars)):] {
		fmt.Fprintf(&b, "\t%s == %s\n", v, v)
	}
	return b.String()
}

func (g *policyGen) stmt() string {
	switch g.pick(12) {
	case 1:
		coll := g.collection()
		v := g.newVar()
		g.vars = append(g.vars, v)
		return fmt.Sprintf("some %s in %s", v, coll)
	case 2:
		coll := g.collection()
		k, v := g.newVar(), g.newVar()
		g.vars = append(g.vars, k, v)
		return fmt.Sprintf("some %s, %s in %s", k, v, coll)
	case 3:
		t := g.term()
		v := g.newVar()
		g.vars = append(g.vars, v)
		return fmt.Sprintf("%s := %s", v, t)
	case 4:
		return fmt.Sprintf("%s %s %s", g.term(), []string{"==", "!=", "<", "<=", ">", ">="}[g.pick(6)], g.term())
	case 5:
		return "not " + []string{g.leaf(), g.call(), g.condition()}[g.pick(3)]
	case 6:
		if g.nest > 1 {
			break
		}
		g.nest++
		defer func() { g.nest-- }()
		coll := g.collection()
		v := g.newVar()
		saved := g.vars
		g.vars = append(g.vars[:len(g.vars):len(g.vars)], v)
		out := fmt.Sprintf("every %s in %s { %s %s %s }", v, coll, v, []string{"!=", "==", "<", ">"}[g.pick(4)], g.term())
		g.vars = saved
		return out
	case 7:
		if ref := g.ruleRef(false); ref != "" {
			v := g.newVar()
			var target string
			switch g.pick(4) {
			case 1:
				target = "data.d." + []string{"k", "m", "m.x"}[g.pick(3)]
			case 2:
				// a built-in replaced by a value or a function
				target = []string{"count", "is_number", "lower"}[g.pick(3)]
			default:
				target = "input." + []string{"a", "xs", "o"}[g.pick(3)]
			}
			with := g.term()
			if fn := g.ruleRef(true); fn != "" && !strings.HasPrefix(target, "input") && !strings.HasPrefix(target, "data") && g.pick(2) == 0 {
				with = fn
			}
			out := fmt.Sprintf("%s := %s with %s as %s", v, ref, target, with)
			g.vars = append(g.vars, v)
			return out
		}
	case 8:
		return fmt.Sprintf("%s in %s", g.term(), g.collection())
	case 9:
		v := g.newVar()
		out := fmt.Sprintf("walk(%s, [_, %s])", g.collection(), v)
		g.vars = append(g.vars, v)
		return out
	case 10:
		return g.condition()
	case 11:
		return fmt.Sprintf("%s, %s in %s", g.term(), g.term(), g.collection())
	}
	// A term alone: OPA's planner leaves out the terms that are always
	// true (a comprehension, a literal), and with them the conflicts
	// topdown finds in them; those are no statements here.
	if g.pick(2) == 0 {
		return g.call()
	}
	return g.leaf()
}

func (g *policyGen) condition() string {
	return fmt.Sprintf("%s %s %s", g.term(), []string{"!=", "==", "<", ">"}[g.pick(4)], g.term())
}

// ruleRef refers to a rule defined before the current one.
func (g *policyGen) ruleRef(fn bool) string {
	var names []string
	for _, r := range g.rules {
		if r.name == g.current {
			break
		}
		if (r.kind == ruleFunc) == fn {
			names = append(names, r.name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	if fn {
		return names[g.pick(len(names))]
	}
	return "data.t." + names[g.pick(len(names))]
}

func (g *policyGen) collection() string {
	switch g.pick(8) {
	case 1:
		return "input.o"
	case 2:
		return g.composite(2)
	case 3:
		return fmt.Sprintf("numbers.range(%d, %d)", g.pick(4)-1, g.pick(20))
	case 4:
		return "data.d"
	case 5:
		if ref := g.ruleRef(false); ref != "" {
			return ref
		}
	case 6:
		return g.comprehension()
	case 7:
		if len(g.vars) > 0 {
			return g.vars[g.pick(len(g.vars))]
		}
	}
	return "input.xs"
}

func (g *policyGen) key() string {
	if len(g.vars) > 0 && g.pick(2) == 0 {
		return g.vars[g.pick(len(g.vars))]
	}
	return g.scalar()
}

func (g *policyGen) term() string {
	g.depth++
	defer func() { g.depth-- }()
	if g.depth > 2 {
		return g.leaf()
	}
	switch g.pick(14) {
	case 1:
		return g.literal(1)
	case 2:
		return g.scalar()
	case 3:
		return g.call()
	case 4:
		return g.comprehension()
	case 5:
		if ref := g.ruleRef(false); ref != "" {
			return ref
		}
	case 6:
		if fn := g.ruleRef(true); fn != "" {
			return fmt.Sprintf("%s(%s)", fn, g.term())
		}
	case 7:
		return fmt.Sprintf("[%s, %s]", g.term(), g.term())
	case 8:
		if g.pick(3) == 0 {
			return fmt.Sprintf("(%s %s %s)", g.setTerm(), []string{"|", "&", "-"}[g.pick(3)], g.setTerm())
		}
		return fmt.Sprintf("(%s %s %s)", g.numTerm(), []string{"+", "-", "*", "/", "%"}[g.pick(5)], g.numTerm())
	case 9:
		return fmt.Sprintf("{%s: %s}", g.key(), g.term())
	case 10:
		return fmt.Sprintf("%s[%s]", g.ref(), g.key())
	case 11:
		obj := []string{"input.o", "data.d", g.objectLit(1), g.ref()}[g.pick(4)]
		return fmt.Sprintf("object.get(%s, %s, %s)", obj, g.key(), g.leaf())
	case 12:
		return g.call()
	case 13:
		return "data.d." + []string{"k", "m", "m.x", "k[1]"}[g.pick(4)]
	}
	return g.leaf()
}

// ref is a reference that may be indexed.
func (g *policyGen) ref() string {
	if len(g.vars) > 0 && g.pick(2) == 0 {
		return g.vars[g.pick(len(g.vars))]
	}
	switch g.pick(4) {
	case 1:
		return "input.o"
	case 2:
		return "data.d"
	case 3:
		if ref := g.ruleRef(false); ref != "" {
			return ref
		}
	}
	return "input.xs"
}

func (g *policyGen) numTerm() string {
	switch g.pick(4) {
	case 1:
		return g.number()
	case 2:
		return "count(" + g.ref() + ")"
	case 3:
		return g.leaf()
	}
	return "input.n"
}

func (g *policyGen) setTerm() string {
	switch g.pick(3) {
	case 1:
		return "{" + g.term() + "}"
	case 2:
		return "{x | some x in " + g.collection() + "}"
	}
	return g.leaf()
}

func (g *policyGen) leaf() string {
	if len(g.vars) > 0 && g.pick(2) == 0 {
		return g.vars[g.pick(len(g.vars))]
	}
	switch g.pick(6) {
	case 1:
		return g.scalar()
	case 2:
		return "input.xs"
	case 3:
		return "input.o"
	case 4:
		return "input.s"
	case 5:
		return "input.n"
	}
	return "input.a"
}

func (g *policyGen) comprehension() string {
	if g.nest > 1 {
		return "input.xs"
	}
	g.nest++
	defer func() { g.nest-- }()
	saved := g.vars
	g.vars = g.vars[:len(g.vars):len(g.vars)]
	defer func() { g.vars = saved }()
	body := strings.Join(strings.Fields(strings.ReplaceAll(g.body(), "\n", ";")), " ")
	body = strings.TrimSuffix(body, ";")
	switch g.pick(3) {
	case 1:
		return fmt.Sprintf("{%s | %s}", g.term(), body)
	case 2:
		return fmt.Sprintf("{%s: %s | %s}", g.key(), g.term(), body)
	}
	return fmt.Sprintf("[%s | %s]", g.term(), body)
}

// genCalls are the built-in calls a policy makes; @ stands for a term, #
// for a reference.
var genCalls = []string{
	"count(#)", "sum(#)", "max(#)", "sort(#)", `concat(",", #)`, `sprintf("%v", [@])`,
	`sprintf("%d|%s|%v", [@, @, @])`, "object.keys(#)", "startswith(@, @)", `endswith(@, "a")`,
	"array.concat(#, #)", "array.slice(#, 0, 2)", "union({#, #})", "intersection({#, #})",
	"type_name(@)", "to_number(@)", "json.marshal(@)", "abs(@)", "format_int(@, 10)",
	`split(@, ",")`, "object.union(#, #)", "object.remove(#, #)", "is_number(@)", "min(#)",
	"lower(@)", "contains(@, @)", `trim(@, " ")`, "product(#)", "array.reverse(#)", "object.filter(#, #)",
	"indexof(@, @)", "round(@)", "numbers.range(0, 9)", "object.get(#, @, @)", "is_set(@)",
}

func (g *policyGen) call() string {
	call := genCalls[g.pick(len(genCalls))]
	var b strings.Builder
	for _, c := range call {
		switch c {
		case '@':
			b.WriteString(g.term())
		case '#':
			b.WriteString(g.ref())
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

var genNumbers = []string{
	"0", "1", "-0", "1.0", "1e0", "2", "-1", "0.5", "10", "100000000000000000000", "1e400", "3.14", "-2.5",
	"1e2", "0.1", "2.00", "9007199254740993", "-100000000000000000000", "1e-400", "0.30000000000000004",
}

var genStrings = []string{`"a"`, `"b"`, `""`, `"a,b"`, `"B"`, `"10"`, `" x "`, `"é"`, `"1.0"`}

func (g *policyGen) number() string { return genNumbers[g.pick(len(genNumbers))] }
func (g *policyGen) str() string    { return genStrings[g.pick(len(genStrings))] }

func (g *policyGen) scalar() string {
	switch g.pick(6) {
	case 1, 2:
		return g.number()
	case 3:
		return []string{"null", "true", "false"}[g.pick(3)]
	}
	return g.str()
}

// literal is a ground value, composites up to depth.
func (g *policyGen) literal(depth int) string {
	if depth <= 0 || g.pick(3) == 0 {
		return g.scalar()
	}
	return g.composite(depth)
}

func (g *policyGen) composite(depth int) string {
	n := g.pick(4)
	elems := make([]string, n)
	switch g.pick(3) {
	case 0:
		for i := range elems {
			elems[i] = g.literal(depth - 1)
		}
		return "[" + strings.Join(elems, ", ") + "]"
	case 1:
		if n == 0 {
			return "[]"
		}
		for i := range elems {
			elems[i] = g.literal(depth - 1)
		}
		return "{" + strings.Join(elems, ", ") + "}"
	}
	return g.objectLit(depth)
}

func (g *policyGen) json(depth int) string {
	switch {
	case depth <= 0 || g.pick(3) == 0:
		if s := g.scalar(); !strings.HasPrefix(s, "1e") && s != "-0" {
			return s
		}
		return "1"
	case g.pick(2) == 0:
		return g.jsonArray(depth)
	}
	return g.jsonObject(depth)
}

func (g *policyGen) jsonArray(depth int) string {
	elems := make([]string, g.pick(4))
	for i := range elems {
		elems[i] = g.json(depth - 1)
	}
	return "[" + strings.Join(elems, ", ") + "]"
}

func (g *policyGen) jsonObject(depth int) string {
	var elems []string
	seen := map[string]bool{}
	for range g.pick(4) {
		k := g.str()
		if !seen[k] {
			seen[k] = true
			elems = append(elems, k+": "+g.json(depth-1))
		}
	}
	return "{" + strings.Join(elems, ", ") + "}"
}

func (g *policyGen) objectLit(depth int) string {
	n := g.pick(4)
	elems := make([]string, n)
	for i := range elems {
		elems[i] = g.scalar() + ": " + g.literal(depth-1)
	}
	return "{" + strings.Join(elems, ", ") + "}"
}
