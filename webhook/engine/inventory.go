package engine

import (
	"encoding/json"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// inventoryDoc is data.inventory in the evaluator's values, with what the
// next swap needs to build its successor from it instead of from nothing:
//
//	{"serviceEntries": [<ServiceEntryRef as JSON>, ...] (in the given order),
//	 "externalHosts": {"<host>": true, ...},
//	 "externalSuffixes": [".x.com", ...] (sorted),
//	 "externalSuffixIndex": {".x.com": true, ...},
//	 "virtualServicesByHost": {"<host>": [<VirtualService>, ...], ...}}
//	   (the audit's alone: Inventory.VirtualServicesByHost)
//
// with the hosts of the MESH_EXTERNAL ServiceEntries (no location means
// MESH_EXTERNAL): exact names in externalHosts, the suffixes of "*.x.com"
// wildcards in the other two.
//
// A swap (withInventory) walks the new ServiceEntries against the last ones,
// both sorted by namespace and name, reuses the values of those unchanged,
// and edits the indexes by the hosts that came or went: its cost grows with
// the ServiceEntries (a copy of the list of values) and the changes, not
// with the hosts' values, which are never built again.
type inventoryDoc struct {
	value *vm.Object
	// refs are the ServiceEntries, copies of those given (shared by the
	// documents that follow while unchanged), and entries their values, in
	// the same order.
	refs    []*ServiceEntryRef
	entries []vm.Value
	// sorted: refs are sorted by namespace and name, without duplicates;
	// only then does the next swap walk them.
	sorted bool
	hosts  *vm.Object // externalHosts
	index  *vm.Object // externalSuffixIndex
	suffix *vm.Array  // externalSuffixes
	// serviceEntries is entries as an array; virtualServices the audit's
	// virtualServicesByHost (nil: none).
	serviceEntries  *vm.Array
	virtualServices vm.Value
	// counts is how many MESH_EXTERNAL ServiceEntries name each host, as
	// of the document that owns it: one document of a line of swaps does,
	// the last one built from it; another one's swap starts afresh.
	counts *hostCounts
}

// hostCounts counts, for the document that owns it, how many times the
// MESH_EXTERNAL ServiceEntries name each host ("*.x.com" for a wildcard).
type hostCounts struct {
	mu    sync.Mutex
	owner *inventoryDoc
	n     map[string]int32
}

// yieldEvery is how many ServiceEntries a swap walks between two yields of
// the processor: a swap runs beside the reviews, on the same CPUs.
const yieldEvery = 2048

// buildInventory builds data.inventory of inv from nothing.
func buildInventory(inv Inventory) *inventoryDoc {
	return (&inventoryDoc{sorted: true}).next(inv, &hostCounts{n: map[string]int32{}})
}

// withInventory builds data.inventory of inv, from d where it can.
func (d *inventoryDoc) withInventory(inv Inventory) *inventoryDoc {
	c := d.counts
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owner != d || !d.sorted || !refsSorted(inv.ServiceEntries) {
		return buildInventory(inv)
	}
	return d.next(inv, c)
}

// next builds the document of inv from d, whose host counts c holds (and
// the caller has locked, unless it is new); d's are walked against inv's
// when both are sorted, else inv's are all new.
func (d *inventoryDoc) next(inv Inventory, c *hostCounts) *inventoryDoc {
	ses := inv.ServiceEntries
	out := &inventoryDoc{
		refs:    make([]*ServiceEntryRef, 0, len(ses)),
		entries: make([]vm.Value, 0, len(ses)),
		sorted:  refsSorted(ses),
		counts:  c,
	}
	delta := map[string]int32{}
	count := func(se *ServiceEntryRef, by int32) {
		if !external(se) {
			return
		}
		for _, h := range se.Hosts {
			delta[h] += by
		}
	}
	fresh := func(se *ServiceEntryRef) {
		ref := copyRef(se)
		out.refs = append(out.refs, ref)
		out.entries = append(out.entries, entryValue(ref))
		count(ref, 1)
	}
	old := d.refs
	if !d.sorted || !out.sorted {
		// Not walked: all new (d is empty when not sorted: the caller
		// made it afresh).
		old = nil
	}
	i := 0
	for j := range ses {
		if j%yieldEvery == yieldEvery-1 {
			runtime.Gosched()
		}
		se := &ses[j]
		for i < len(old) && refLess(old[i], se) {
			count(old[i], -1) // deleted
			i++
		}
		if i < len(old) && old[i].Namespace == se.Namespace && old[i].Name == se.Name {
			if sameRef(old[i], se) {
				out.refs = append(out.refs, old[i])
				out.entries = append(out.entries, d.entries[i])
			} else {
				count(old[i], -1)
				fresh(se)
			}
			i++
			continue
		}
		fresh(se)
	}
	for ; i < len(old); i++ {
		count(old[i], -1)
	}

	var addHosts, delHosts, addSuffixes, delSuffixes []string
	for h, by := range delta {
		if by == 0 {
			continue
		}
		before := c.n[h]
		after := before + by
		if after > 0 {
			c.n[h] = after
		} else {
			delete(c.n, h)
		}
		suffix, wild := strings.CutPrefix(h, "*")
		wild = wild && strings.HasPrefix(suffix, ".")
		switch {
		case before <= 0 && after > 0 && wild:
			addSuffixes = append(addSuffixes, suffix)
		case before <= 0 && after > 0:
			addHosts = append(addHosts, h)
		case before > 0 && after <= 0 && wild:
			delSuffixes = append(delSuffixes, suffix)
		case before > 0 && after <= 0:
			delHosts = append(delHosts, h)
		}
	}
	for _, s := range [][]string{addHosts, delHosts, addSuffixes, delSuffixes} {
		slices.Sort(s)
	}
	out.hosts = vm.EditStringKeys(d.hosts, addHosts, true, delHosts)
	out.index = vm.EditStringKeys(d.index, addSuffixes, true, delSuffixes)
	out.suffix = vm.EditStrings(d.suffix, addSuffixes, delSuffixes)
	out.serviceEntries = vm.ArrayOf(slices.Clip(out.entries))
	if inv.VirtualServicesByHost != nil {
		out.virtualServices = virtualServicesValue(inv.VirtualServicesByHost)
	}
	out.value = out.valueWith()
	c.owner = out
	return out
}

// valueWith is data.inventory with the pairs kvs (keys and values, in
// turn) beside d's own.
func (d *inventoryDoc) valueWith(kvs ...vm.Value) *vm.Object {
	kvs = append(kvs,
		"externalHosts", d.hosts,
		"externalSuffixIndex", d.index,
		"externalSuffixes", d.suffix,
		"serviceEntries", d.serviceEntries,
	)
	if d.virtualServices != nil {
		kvs = append(kvs, "virtualServicesByHost", d.virtualServices)
	}
	return vm.NewObject(kvs...)
}

// virtualServicesValue is data.inventory.virtualServicesByHost. A
// VirtualService that is not valid JSON is left out (the audit reports it
// as an object of its own).
func virtualServicesValue(byHost map[string][]json.RawMessage) vm.Value {
	kvs := make([]vm.Value, 0, 2*len(byHost))
	for _, host := range slices.Sorted(maps.Keys(byHost)) {
		var vss []vm.Value
		for _, raw := range byHost[host] {
			if v, err := toValue(raw, true, false); err == nil {
				vss = append(vss, v)
			}
		}
		kvs = append(kvs, host, vm.NewArray(vss...))
	}
	return vm.NewObject(kvs...)
}

// external: se's hosts are external (MESH_EXTERNAL, or no location).
func external(se *ServiceEntryRef) bool {
	return se.Location == "" || se.Location == "MESH_EXTERNAL"
}

// refLess orders ServiceEntries by namespace, then name.
func refLess(a, b *ServiceEntryRef) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// refsSorted: ses are sorted by namespace and name, without duplicates.
func refsSorted(ses []ServiceEntryRef) bool {
	for i := 1; i < len(ses); i++ {
		if !refLess(&ses[i-1], &ses[i]) {
			return false
		}
	}
	return true
}

// sameRef: a and b hold the same ServiceEntry (hosts nil and empty differ:
// null and [] in JSON). Hosts that are the same slice are not compared:
// the watcher's unchanged ServiceEntries keep theirs from snapshot to
// snapshot, and hosts given are not modified (Inventory).
func sameRef(a, b *ServiceEntryRef) bool {
	if a.Namespace != b.Namespace || a.Name != b.Name || a.Location != b.Location ||
		len(a.Hosts) != len(b.Hosts) || (a.Hosts == nil) != (b.Hosts == nil) {
		return false
	}
	return len(a.Hosts) == 0 || &a.Hosts[0] == &b.Hosts[0] || slices.Equal(a.Hosts, b.Hosts)
}

// copyRef is a copy of se.
func copyRef(se *ServiceEntryRef) *ServiceEntryRef {
	out := *se
	return &out
}

// entryValue is se in its JSON form as a value: hosts null when nil, no
// location when empty.
func entryValue(se *ServiceEntryRef) vm.Value {
	var hosts vm.Value = vm.Null{}
	if se.Hosts != nil {
		hs := make([]vm.Value, len(se.Hosts))
		for i, h := range se.Hosts {
			hs[i] = h
		}
		hosts = vm.ArrayOf(hs)
	}
	kvs := []vm.Value{inventoryKeys["namespace"], se.Namespace, inventoryKeys["name"], se.Name, inventoryKeys["hosts"], hosts}
	if se.Location != "" {
		kvs = append(kvs, inventoryKeys["location"], se.Location)
	}
	return vm.NewObject(kvs...)
}
