package engine

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/valyala/fastjson"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// Model is the cluster model, the objects cross-object rules read about the
// rest of the cluster:
//
//	data.inventory.objects[kind]["<namespace>/<name>"]: the object
//	data.inventory.byHost[kind]["<host>"]: [the objects naming the host, by namespace and name]
//
// for every kind of config.ModelKinds (an empty object for one the model
// holds none of; a partial model, the kinds it holds alone), byHost for ServiceEntries (spec.hosts, as written),
// VirtualServices (spec.hosts) and DestinationRules (spec.host), whose short
// names are resolved in the object's namespace as Istio resolves them. The
// objects of a host are in the order of their keys.
type Model struct {
	// Kinds holds one collection per kind, in any order.
	Kinds []*ModelKind
	// Partial: the model holds the kinds of Kinds alone (files, where a
	// kind none of them has is unknown, not empty); else every model kind
	// is there, empty where Kinds lacks it (a cluster's).
	Partial bool
}

// ModelKind is the objects of one kind. A ModelKind given to the engine is
// never modified after: a source whose objects of a kind change gives a new
// ModelKind, and a swap reuses what it built of one it saw before (the same
// pointer), so that an unchanged kind costs nothing.
type ModelKind struct {
	Kind string
	// Objects are the kind's objects; of two with the same namespace and
	// name, the later one is kept.
	Objects []*ModelObject
	// Base and Changed, when Base is set, say how Objects differ from
	// Base's: the objects put, by "namespace/name", and nil for those
	// deleted. A swap from a document built of Base edits what changed
	// instead of building the kind again. They are read by the swap the
	// kind is given to alone: its source may clear them after, so that a
	// line of kinds does not hold every version before it.
	Base    *ModelKind
	Changed map[string]*ModelObject
}

// ModelObject is one object of the model.
type ModelObject struct {
	// k is "namespace/name" (NewModelObject's; else made when needed).
	k               string
	Namespace, Name string
	// Hosts are the hosts the object names, as written (byHost).
	Hosts []string
	// Value is the object as the rules read it (NewModelObject).
	Value vm.Value
}

// hostIndexed are the kinds data.inventory.byHost indexes, and where their
// hosts are.
var hostIndexed = map[string]string{"ServiceEntry": "hosts", "VirtualService": "hosts", "DestinationRule": "host"}

// lastApplied is kubectl's copy of the object in an annotation: as large
// as the object, and of no use to a rule.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// NewModelObject converts the JSON of an object of kind into the model's
// form of it: its apiVersion, kind, metadata (name, namespace, labels and
// annotations, without kubectl's last-applied copy) and spec, no status. A
// Secret keeps its type and, instead of its data, "keys": the sorted names
// of data and stringData; its values are never kept.
func NewModelObject(kind string, raw []byte) (*ModelObject, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	doc, err := p.ParseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %w", kind, err)
	}
	if doc.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%s: not a JSON object", kind)
	}
	obj := doc.GetObject()
	o := &ModelObject{
		Namespace: string(doc.GetStringBytes("metadata", "namespace")),
		Name:      string(doc.GetStringBytes("metadata", "name")),
	}
	keys := schemaKeys()
	kvs := []vm.Value{}
	var secretKeys []string
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch k := string(key); k {
		case "apiVersion", "kind", "spec", "type":
			kvs = append(kvs, k, vm.FromJSON(v, keys))
		case "metadata":
			kvs = append(kvs, k, modelMetadata(v, keys))
		case "data", "stringData":
			if kind != "Secret" {
				kvs = append(kvs, k, vm.FromJSON(v, keys))
				break
			}
			if d := v.GetObject(); d != nil {
				d.Visit(func(name []byte, _ *fastjson.Value) { secretKeys = append(secretKeys, string(name)) })
			}
		}
	})
	if kind == "Secret" {
		slices.Sort(secretKeys)
		names := make([]vm.Value, 0, len(secretKeys))
		for _, k := range slices.Compact(secretKeys) {
			names = append(names, k)
		}
		kvs = append(kvs, "keys", vm.ArrayOf(names))
	}
	o.Value = vm.NewObject(kvs...)
	o.k = o.Namespace + "/" + o.Name
	if field, ok := hostIndexed[kind]; ok {
		hosts := doc.Get("spec", field)
		switch {
		case hosts == nil:
		case hosts.Type() == fastjson.TypeString:
			o.Hosts = []string{string(hosts.GetStringBytes())}
		case hosts.Type() == fastjson.TypeArray:
			for _, h := range hosts.GetArray() {
				if h.Type() == fastjson.TypeString {
					o.Hosts = append(o.Hosts, string(h.GetStringBytes()))
				}
			}
		}
	}
	return o, nil
}

// key is the object's key in data.inventory.objects: "namespace/name".
func (o *ModelObject) key() string {
	if o.k != "" {
		return o.k
	}
	return o.Namespace + "/" + o.Name
}

// modelMetadata is the metadata the model keeps of an object.
func modelMetadata(v *fastjson.Value, keys map[string]vm.Value) vm.Value {
	kvs := []vm.Value{}
	if m := v.GetObject(); m != nil {
		m.Visit(func(key []byte, x *fastjson.Value) {
			switch k := string(key); k {
			case "name", "namespace", "labels":
				kvs = append(kvs, k, vm.FromJSON(x, keys))
			case "annotations":
				if a := x.GetObject(); a != nil && a.Get(lastApplied) != nil {
					a.Del(lastApplied)
				}
				kvs = append(kvs, k, vm.FromJSON(x, keys))
			}
		})
	}
	return vm.NewObject(kvs...)
}

// ResolveHost is host as Istio reads it in an object of namespace: a short
// name (no dot, not "*", not an IP address) is <host>.<namespace>.svc.<domain>.
func ResolveHost(host, namespace, domain string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") || net.ParseIP(host) != nil {
		return host
	}
	out := host
	if namespace != "" {
		out += "." + namespace
	}
	if domain != "" {
		out += ".svc." + domain
	}
	return out
}

// modelDoc is data.inventory.objects and data.inventory.byHost, with what
// the next swap reuses: each kind's values, by the ModelKind they were
// built from.
type modelDoc struct {
	domain  string
	kinds   map[string]*kindDoc
	objects *vm.Object
	byHost  *vm.Object
}

type kindDoc struct {
	src     *ModelKind
	objects *vm.Object
	byHost  *vm.Object // nil: the kind is not indexed by host
	// state is what an edit starts from, owned by the last kindDoc of a
	// line of edits.
	state *kindState
}

// kindState holds, for the kindDoc that owns it, the kind's objects by key
// and the keys naming each host (sorted): an edit changes the hosts its
// objects touch, and the next document owns the state. An edit from a
// document that does not own it builds the kind again.
type kindState struct {
	mu       sync.Mutex
	owner    *kindDoc
	objs     map[string]*ModelObject
	hostKeys map[string][]string
}

// buildModel builds the model's values of m, from prev's where m's kinds
// are those prev was built from (nil prev: from nothing). A nil m is no
// model: nil.
func buildModel(prev *modelDoc, m *Model, domain string) *modelDoc {
	if m == nil {
		return nil
	}
	out := &modelDoc{domain: domain, kinds: map[string]*kindDoc{}}
	given := map[string]*ModelKind{}
	for _, k := range m.Kinds {
		if k != nil {
			given[k.Kind] = k
		}
	}
	names := make([]string, 0, len(config.ModelKinds)+len(given))
	if !m.Partial {
		for _, k := range config.ModelKinds {
			names = append(names, k.Kind)
		}
	}
	for name := range given {
		names = append(names, name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	objects := make([]vm.Value, 0, len(names))
	var hostKinds []string
	var byHost []vm.Value
	for _, name := range names {
		src := given[name]
		if src == nil {
			src = &ModelKind{Kind: name}
		}
		var kd *kindDoc
		var last *kindDoc
		if prev != nil && prev.domain == domain {
			last = prev.kinds[name]
		}
		switch {
		case last != nil && last.src == src:
			kd = last
		case last != nil && src.Base != nil && last.src == src.Base:
			kd = editKind(last, src, domain)
		default:
			kd = buildKind(src, domain)
		}
		out.kinds[name] = kd
		objects = append(objects, kd.objects)
		if kd.byHost != nil {
			hostKinds = append(hostKinds, name)
			byHost = append(byHost, kd.byHost)
		}
	}
	out.objects = vm.StringObject(names, objects)
	out.byHost = vm.StringObject(hostKinds, byHost)
	return out
}

// buildKind builds one kind's values.
func buildKind(k *ModelKind, domain string) *kindDoc {
	_, indexed := hostIndexed[k.Kind]
	st := &kindState{objs: make(map[string]*ModelObject, len(k.Objects))}
	for _, o := range k.Objects {
		st.objs[o.key()] = o // the same object twice: the last one
	}
	keys := make([]string, 0, len(st.objs))
	for key := range st.objs {
		keys = append(keys, key)
	}
	// "ns/name" sorts otherwise than (ns, name): "a-b/x" before "a/x".
	slices.Sort(keys)
	values := make([]vm.Value, len(keys))
	for i, key := range keys {
		values[i] = st.objs[key].Value
	}
	kd := &kindDoc{src: k, objects: vm.StringObject(keys, values), state: st}
	if indexed {
		st.hostKeys = map[string][]string{}
		for _, key := range keys {
			for _, h := range hostsOf(k.Kind, st.objs[key], domain) {
				st.hostKeys[h] = append(st.hostKeys[h], key)
			}
		}
		hosts := slices.Sorted(maps.Keys(st.hostKeys))
		lists := make([]vm.Value, len(hosts))
		for i, h := range hosts {
			lists[i] = st.hostList(h)
		}
		kd.byHost = vm.StringObject(hosts, lists)
	}
	st.owner = kd
	return kd
}

// editKind builds the values of k from last's, k being last's source with
// k.Changed applied: the keys that changed, and the hosts their objects
// named before or name now.
func editKind(last *kindDoc, k *ModelKind, domain string) *kindDoc {
	st := last.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owner != last {
		return buildKind(k, domain)
	}
	_, indexed := hostIndexed[k.Kind]
	keys := slices.Sorted(maps.Keys(k.Changed))
	var set, del []string
	var values []vm.Value
	touched := map[string]bool{}
	for _, key := range keys {
		o := k.Changed[key]
		if old, ok := st.objs[key]; ok && indexed {
			for _, h := range hostsOf(k.Kind, old, domain) {
				touched[h] = true
				if i, found := slices.BinarySearch(st.hostKeys[h], key); found {
					st.hostKeys[h] = slices.Delete(slices.Clone(st.hostKeys[h]), i, i+1)
				}
			}
		}
		if o == nil {
			if _, ok := st.objs[key]; ok {
				del = append(del, key)
				delete(st.objs, key)
			}
			continue
		}
		st.objs[key] = o
		set, values = append(set, key), append(values, o.Value)
		if indexed {
			for _, h := range hostsOf(k.Kind, o, domain) {
				touched[h] = true
				list := st.hostKeys[h]
				i, _ := slices.BinarySearch(list, key)
				st.hostKeys[h] = slices.Insert(slices.Clone(list), i, key)
			}
		}
	}
	kd := &kindDoc{src: k, objects: vm.EditStringObject(last.objects, set, values, del), state: st}
	if indexed {
		var hset, hdel []string
		var lists []vm.Value
		for _, h := range slices.Sorted(maps.Keys(touched)) {
			if len(st.hostKeys[h]) == 0 {
				delete(st.hostKeys, h)
				hdel = append(hdel, h)
				continue
			}
			hset, lists = append(hset, h), append(lists, st.hostList(h))
		}
		kd.byHost = vm.EditStringObject(last.byHost, hset, lists, hdel)
	}
	st.owner = kd
	return kd
}

// hostList is the array of the objects naming host h, in key order.
func (st *kindState) hostList(h string) vm.Value {
	keys := st.hostKeys[h]
	list := make([]vm.Value, len(keys))
	for i, key := range keys {
		list[i] = st.objs[key].Value
	}
	return vm.ArrayOf(list)
}

// hostsOf are the hosts o is indexed by, once each: VirtualServices' and
// DestinationRules' short names resolved in their namespaces; a
// ServiceEntry's hosts taken as written, as Istio takes them.
func hostsOf(kind string, o *ModelObject, domain string) []string {
	out := make([]string, 0, len(o.Hosts))
	for _, h := range o.Hosts {
		if kind != "ServiceEntry" {
			h = ResolveHost(h, o.Namespace, domain)
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// DropSecretValues empties the values of a Secret's data and stringData in
// obj, an object as a Kubernetes client decodes it, keeping their names: what
// the model keeps of a Secret, so that its values go no further than the
// client's read of it.
func DropSecretValues(obj map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		if values, ok := obj[field].(map[string]any); ok {
			for k := range values {
				values[k] = ""
			}
		}
	}
}
