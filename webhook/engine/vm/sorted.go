package vm

// Sorted string collections, edited by copy: the inventory's indexes
// (externalHosts, externalSuffixIndex, externalSuffixes) change by a few
// keys per swap, and a swap makes the next version from the last one without
// building what did not change. The keys of the results are the boxed
// strings of the values they are made from: only added keys are boxed.

// EditStringKeys returns an object with o's pairs but those whose keys are
// in del, and a pair (k, v) for every k in add (EditStringObject with v
// for every key); o is not modified. o's keys must be strings (nil o is the
// empty object); add and del sorted and distinct (a key of del that o lacks
// is ignored). A nil or empty edit returns o itself. A large result is
// looked up by binary search, not indexed.
func EditStringKeys(o *Object, add []string, v Value, del []string) *Object {
	values := make([]Value, len(add))
	for i := range values {
		values[i] = v
	}
	return EditStringObject(o, add, values, del)
}

// EditStrings returns a sorted array of strings: a's elements but those in
// del, and add's; a is not modified. a's elements must be sorted distinct
// strings (nil a is the empty array); add and del as EditStringKeys takes
// them. A nil or empty edit returns a itself.
func EditStrings(a *Array, add, del []string) *Array {
	if a == nil {
		a = newArray(0)
	}
	if len(add) == 0 && len(del) == 0 {
		return a
	}
	out := newArray(len(a.elems) + len(add))
	i, j := 0, 0
	for _, e := range a.elems {
		s := e.(string)
		for i < len(add) && add[i] < s {
			out.elems = append(out.elems, add[i])
			i++
		}
		if i < len(add) && add[i] == s {
			i++
		}
		for j < len(del) && del[j] < s {
			j++
		}
		if j < len(del) && del[j] == s {
			j++
			continue
		}
		out.elems = append(out.elems, e)
	}
	for ; i < len(add); i++ {
		out.elems = append(out.elems, add[i])
	}
	return out
}

// ArrayOf is an array of elems, which it keeps: the caller does not modify
// elems after.
func ArrayOf(elems []Value) *Array {
	if len(elems) <= 2 {
		return NewArray(elems...)
	}
	return &Array{elems: elems}
}

// StringObject is the object of the pairs (keys[i], values[i]); keys must be
// sorted and distinct (the caller keeps neither slice's order otherwise).
// A large one is looked up by binary search, as EditStringKeys' results.
func StringObject(keys []string, values []Value) *Object {
	out := newObject(len(keys))
	for i, k := range keys {
		out.kvs = append(out.kvs, pair{k, values[i]})
	}
	out.bsearch = len(out.kvs) >= indexFrom
	return out
}

// EditStringObject returns an object with o's pairs but those whose keys
// are in del, and (set[i], values[i]) for every key of set, replacing the
// pair of a key o has; o is not modified. o's keys must be sorted strings
// (nil o is the empty object); set and del sorted and distinct, and
// disjoint. An empty edit returns o itself.
func EditStringObject(o *Object, set []string, values []Value, del []string) *Object {
	if o == nil {
		o = &Object{}
	}
	if len(set) == 0 && len(del) == 0 {
		return o
	}
	o.sort()
	out := newObject(len(o.kvs) + len(set))
	i, j := 0, 0
	for _, p := range o.kvs {
		k := p.k.(string)
		for i < len(set) && set[i] < k {
			out.kvs = append(out.kvs, pair{set[i], values[i]})
			i++
		}
		if i < len(set) && set[i] == k {
			out.kvs = append(out.kvs, pair{p.k, values[i]})
			i++
			continue
		}
		for j < len(del) && del[j] < k {
			j++
		}
		if j < len(del) && del[j] == k {
			j++
			continue
		}
		out.kvs = append(out.kvs, p)
	}
	for ; i < len(set); i++ {
		out.kvs = append(out.kvs, pair{set[i], values[i]})
	}
	out.bsearch = len(out.kvs) >= indexFrom
	return out
}
