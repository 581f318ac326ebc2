package vm

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/valyala/fastjson"
)

// Values the evaluator computes with. They follow Rego's data model, in a
// form cheaper to build and read than OPA's ast values:
//
//	undefined  nil
//	null       Null{}
//	boolean    bool
//	number     ast.Number
//	string     string
//	array      *Array
//	object     *Object
//	set        *Set
//
// Values cross to OPA's ast form only at a built-in call (its arguments and
// result) and at the end (the result set). A composite keeps its ast form
// once made, until it changes.
type Value = any

// Null is Rego's null.
type Null struct{}

// Array is a Rego array.
type Array struct {
	elems []Value
	// term is the ast form, made on first use (atomic: a shared value's
	// may be made by concurrent evaluations, each making the same).
	term atomic.Pointer[ast.Term]
	// small holds the elements of a short array: one allocation, not two.
	small [2]Value
}

// Object is a Rego object. Its keys are iterated in OPA's order (see
// compare), as topdown iterates them.
type Object struct {
	kvs []pair
	// index maps a key's hash to the positions of the keys with that hash,
	// built once the object is large enough for it to pay.
	index map[uint64][]int
	term  atomic.Pointer[ast.Term]
	// small holds the pairs of a small object: one allocation, not two.
	small [2]pair
	// bsearch: the keys are all strings, in order, and looked up by binary
	// search instead of an index (EditStringKeys: an edited copy of a large
	// object is not indexed again). Cleared by an insert.
	bsearch bool
	// unsorted: a key was added out of order, and kvs are sorted before
	// they are next iterated. Objects an evaluation builds are sorted when
	// first iterated; those it is given are sorted when made (FromJSON,
	// FromAST, NewObject, Insert, Share), so that evaluations only read them.
	unsorted bool
}

type pair struct{ k, v Value }

// Set is a Rego set. Its elements are iterated in OPA's order, sorted
// lazily as an object's keys are.
type Set struct {
	elems    []Value
	index    map[uint64][]int
	term     atomic.Pointer[ast.Term]
	unsorted bool
}

// indexFrom is the size from which objects and sets look keys up by hash.
const indexFrom = 16

func newArray(capacity int) *Array {
	a := &Array{}
	if capacity <= len(a.small) {
		a.elems = a.small[:0]
	} else {
		a.elems = make([]Value, 0, capacity)
	}
	return a
}

func (a *Array) append(v Value) {
	a.elems = append(a.elems, v)
	a.term.Store(nil)
}

// Len is the array's length.
func (a *Array) Len() int { return len(a.elems) }

func (o *Object) find(k Value) int {
	if o.index != nil {
		for _, i := range o.index[hash(k)] {
			if equal(o.kvs[i].k, k) {
				return i
			}
		}
		return -1
	}
	if o.bsearch {
		if s, ok := k.(string); ok {
			return o.search(s)
		}
		return -1
	}
	if s, ok := k.(string); ok {
		for i := range o.kvs {
			if xs, ok := o.kvs[i].k.(string); ok && xs == s {
				return i
			}
		}
		return -1
	}
	for i := range o.kvs {
		if equal(o.kvs[i].k, k) {
			return i
		}
	}
	return -1
}

func newObject(capacity int) *Object {
	o := &Object{}
	if capacity <= len(o.small) {
		o.kvs = o.small[:0]
	} else {
		o.kvs = make([]pair, 0, capacity)
	}
	return o
}

// search is the position of the string key k in an object whose keys are
// sorted strings (bsearch), -1 when absent.
func (o *Object) search(k string) int {
	i, found := slices.BinarySearchFunc(o.kvs, k, func(p pair, k string) int { return strings.Compare(p.k.(string), k) })
	if !found {
		return -1
	}
	return i
}

// GetString is Get of a string key.
func (o *Object) GetString(k string) Value {
	if o.index != nil {
		return o.Get(k)
	}
	if o.bsearch {
		if i := o.search(k); i >= 0 {
			return o.kvs[i].v
		}
		return nil
	}
	for i := range o.kvs {
		if s, ok := o.kvs[i].k.(string); ok && s == k {
			return o.kvs[i].v
		}
	}
	return nil
}

// Get returns the value at key k, nil when absent.
func (o *Object) Get(k Value) Value {
	if i := o.find(k); i >= 0 {
		return o.kvs[i].v
	}
	return nil
}

// insert sets k to v.
func (o *Object) insert(k, v Value) {
	o.term.Store(nil)
	if o.bsearch {
		o.bsearch = false
		if len(o.kvs) >= indexFrom {
			o.reindex()
		}
	}
	if i := o.find(k); i >= 0 {
		o.kvs[i].v = v
		return
	}
	if o.kvs == nil {
		o.kvs = o.small[:0]
	}
	if n := len(o.kvs); n > 0 && !o.unsorted && less(k, o.kvs[n-1].k) {
		o.unsorted = true
	}
	o.kvs = append(o.kvs, pair{k, v})
	switch {
	case o.index != nil:
		h := hash(k)
		o.index[h] = append(o.index[h], len(o.kvs)-1)
	case len(o.kvs) == indexFrom:
		o.reindex()
	}
}

func (o *Object) reindex() {
	o.index = make(map[uint64][]int, len(o.kvs))
	// The positions share one backing array, each of capacity one: a
	// hash's second position (rare) moves it to one of its own.
	positions := make([]int, len(o.kvs))
	for i := range o.kvs {
		h := hash(o.kvs[i].k)
		if is, ok := o.index[h]; ok {
			o.index[h] = append(is, i)
			continue
		}
		positions[i] = i
		o.index[h] = positions[i : i+1 : i+1]
	}
}

// sort puts the keys in order; a no-op (and no write) when they are.
func (o *Object) sort() {
	if !o.unsorted {
		return
	}
	slices.SortFunc(o.kvs, func(a, b pair) int { return compare(a.k, b.k) })
	o.unsorted = false
	if o.index != nil {
		o.reindex()
	}
}

// Len is the object's size.
func (o *Object) Len() int { return len(o.kvs) }

func (s *Set) find(v Value) int {
	if s.index != nil {
		for _, i := range s.index[hash(v)] {
			if equal(s.elems[i], v) {
				return i
			}
		}
		return -1
	}
	for i, x := range s.elems {
		if equal(x, v) {
			return i
		}
	}
	return -1
}

func (s *Set) add(v Value) {
	if s.find(v) >= 0 {
		return
	}
	s.term.Store(nil)
	if s.elems == nil {
		s.elems = make([]Value, 0, 4)
	}
	if n := len(s.elems); n > 0 && !s.unsorted && less(v, s.elems[n-1]) {
		s.unsorted = true
	}
	s.elems = append(s.elems, v)
	switch {
	case s.index != nil:
		h := hash(v)
		s.index[h] = append(s.index[h], len(s.elems)-1)
	case len(s.elems) == indexFrom:
		s.reindex()
	}
}

func (s *Set) reindex() {
	s.index = make(map[uint64][]int, len(s.elems))
	positions := make([]int, len(s.elems))
	for i, e := range s.elems {
		h := hash(e)
		if is, ok := s.index[h]; ok {
			s.index[h] = append(is, i)
			continue
		}
		positions[i] = i
		s.index[h] = positions[i : i+1 : i+1]
	}
}

// sort puts the elements in order; a no-op (and no write) when they are.
func (s *Set) sort() {
	if !s.unsorted {
		return
	}
	slices.SortFunc(s.elems, compare)
	s.unsorted = false
	if s.index != nil {
		s.reindex()
	}
}

// Len is the set's size.
func (s *Set) Len() int { return len(s.elems) }

// equal is Rego's equality: structural, numbers by value, sets and objects
// regardless of order.
func equal(a, b Value) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case Null:
		_, ok := b.(Null)
		return ok
	case ast.Number:
		y, ok := b.(ast.Number)
		return ok && (x == y || ast.NumberCompare(x, y) == 0)
	case *Array:
		y, ok := b.(*Array)
		if !ok || len(x.elems) != len(y.elems) {
			return false
		}
		for i := range x.elems {
			if !equal(x.elems[i], y.elems[i]) {
				return false
			}
		}
		return true
	case *Object:
		y, ok := b.(*Object)
		if !ok || len(x.kvs) != len(y.kvs) {
			return false
		}
		for _, p := range x.kvs {
			j := y.find(p.k)
			if j < 0 || !equal(p.v, y.kvs[j].v) {
				return false
			}
		}
		return true
	case *Set:
		y, ok := b.(*Set)
		if !ok || len(x.elems) != len(y.elems) {
			return false
		}
		for _, e := range x.elems {
			if y.find(e) < 0 {
				return false
			}
		}
		return true
	}
	return false
}

var seed = maphash.MakeSeed()

// hash is consistent with equal: equal values hash alike.
func hash(v Value) uint64 {
	switch x := v.(type) {
	case string:
		return maphash.String(seed, x)
	case bool:
		if x {
			return 1
		}
		return 2
	case Null:
		return 3
	case ast.Number:
		return hashNumber(x)
	case *Array:
		h := uint64(5)
		for _, e := range x.elems {
			h = h*31 + hash(e)
		}
		return h
	case *Object:
		// order-independent
		h := uint64(7)
		for _, p := range x.kvs {
			h += mix(hash(p.k), hash(p.v))
		}
		return h
	case *Set:
		h := uint64(11)
		for _, e := range x.elems {
			h += hash(e) * 0x9e3779b97f4a7c15
		}
		return h
	}
	return 0
}

// hashNumber hashes a number by its nearest float64. Numbers equal as OPA
// compares them (1, 1.0, 1e0; 0 and -0) have the same nearest float64, or
// are both past float64's range on the same side (ParseFloat gives the
// infinity of their sign); unequal numbers may share one, as hashes may.
func hashNumber(n ast.Number) uint64 {
	f, _ := strconv.ParseFloat(string(n), 64)
	if f == 0 {
		f = 0 // -0
	}
	return math.Float64bits(f)*0x9e3779b97f4a7c15 + 13
}

func mix(a, b uint64) uint64 {
	var buf [16]byte
	binary.LittleEndian.PutUint64(buf[:8], a)
	binary.LittleEndian.PutUint64(buf[8:], b)
	return maphash.Bytes(seed, buf[:])
}

// toTerm gives a value's ast form.
func toTerm(v Value) *ast.Term {
	switch x := v.(type) {
	case string:
		return ast.StringTerm(x)
	case bool:
		return ast.InternedTerm(x)
	case Null:
		return ast.NullTerm()
	case ast.Number:
		if t := ast.InternedIntNumberTermFromString(string(x)); t != nil {
			return t
		}
		return ast.NewTerm(x)
	case *Array:
		return memoTerm(&x.term, func() *ast.Term { return ast.ArrayTerm(toTerms(x.elems)...) })
	case *Object:
		return memoTerm(&x.term, func() *ast.Term {
			items := make([][2]*ast.Term, len(x.kvs))
			for i, p := range x.kvs {
				items[i] = [2]*ast.Term{toTerm(p.k), toTerm(p.v)}
			}
			return ast.ObjectTerm(items...)
		})
	case *Set:
		return memoTerm(&x.term, func() *ast.Term { return ast.SetTerm(toTerms(x.elems)...) })
	}
	return nil
}

// memoTerm returns the term kept in p, built and kept on first use.
func memoTerm(p *atomic.Pointer[ast.Term], build func() *ast.Term) *ast.Term {
	if t := p.Load(); t != nil {
		return t
	}
	t := build()
	p.Store(t)
	return t
}

// toTerms converts values to ast terms.
func toTerms(vs []Value) []*ast.Term {
	terms := make([]*ast.Term, len(vs))
	for i, v := range vs {
		terms[i] = toTerm(v)
	}
	return terms
}

// FromAST converts an ast value.
func FromAST(v ast.Value) Value {
	switch x := v.(type) {
	case ast.String:
		return string(x)
	case ast.Boolean:
		return bool(x)
	case ast.Null:
		return Null{}
	case ast.Number:
		return x
	case *ast.Array:
		a := newArray(x.Len())
		for i := range x.Len() {
			a.elems = append(a.elems, FromAST(x.Elem(i).Value))
		}
		return a
	case ast.Object:
		// OPA iterates in order: the keys come sorted.
		o := newObject(x.Len())
		x.Foreach(func(k, v *ast.Term) { o.insert(FromAST(k.Value), FromAST(v.Value)) })
		o.sort()
		return o
	case ast.Set:
		s := &Set{elems: make([]Value, 0, x.Len())}
		x.Foreach(func(t *ast.Term) { s.add(FromAST(t.Value)) })
		s.sort()
		return s
	}
	return nil
}

// ToAST converts a value into OPA's form.
func ToAST(v Value) ast.Value {
	if t := toTerm(v); t != nil {
		return t.Value
	}
	return nil
}

// FromJSON converts a parsed JSON document. keys, when set, holds object
// keys to share instead of allocating them.
func FromJSON(v *fastjson.Value, keys map[string]Value) Value {
	switch v.Type() {
	case fastjson.TypeObject:
		src := v.GetObject()
		o := newObject(src.Len())
		src.Visit(func(key []byte, x *fastjson.Value) {
			k, ok := keys[string(key)]
			if !ok {
				k = string(key)
			}
			o.insert(k, FromJSON(x, keys))
		})
		o.sort()
		return o
	case fastjson.TypeArray:
		src := v.GetArray()
		a := newArray(len(src))
		for _, x := range src {
			a.elems = append(a.elems, FromJSON(x, keys))
		}
		return a
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b)
	case fastjson.TypeNumber:
		return ast.Number(v.String())
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	}
	return Null{}
}

// NewArray builds an array of elems.
func NewArray(elems ...Value) *Array {
	a := newArray(len(elems))
	a.elems = append(a.elems, elems...)
	return a
}

// NewObject builds an object from alternating keys and values.
func NewObject(kvs ...Value) *Object {
	o := newObject(len(kvs) / 2)
	for i := 0; i+1 < len(kvs); i += 2 {
		o.insert(kvs[i], kvs[i+1])
	}
	o.sort()
	return o
}

// Elems lists the set's elements in OPA's order.
func (s *Set) Elems() []Value {
	s.sort()
	return s.elems
}

// Values lists the object's values, in the order of its keys (OPA's).
func (o *Object) Values() []Value {
	o.sort()
	out := make([]Value, len(o.kvs))
	for i, p := range o.kvs {
		out[i] = p.v
	}
	return out
}

// Insert sets k to v, keeping the keys in order.
func (o *Object) Insert(k, v Value) {
	o.insert(k, v)
	o.sort()
}

// Share readies v for concurrent evaluations: it puts every object's keys
// and every set's elements in order, so that evaluations only read them.
// The ast form of a composite (for OPA's built-ins) is made on first use,
// atomically; most of a large data document is never passed to one. The
// evaluator never modifies a value it did not build.
func Share(v Value) Value {
	sortAll(v)
	return v
}

func sortAll(v Value) {
	switch x := v.(type) {
	case *Array:
		for _, e := range x.elems {
			sortAll(e)
		}
	case *Object:
		for _, p := range x.kvs {
			sortAll(p.k)
			sortAll(p.v)
		}
		x.sort()
	case *Set:
		for _, e := range x.elems {
			sortAll(e)
		}
		x.sort()
	}
}

// Elems lists the array's elements.
func (a *Array) Elems() []Value { return a.elems }
