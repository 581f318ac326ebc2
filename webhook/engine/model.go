package engine

import (
	"fmt"
	"net"
	"slices"
	"strings"

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
}

// ModelObject is one object of the model.
type ModelObject struct {
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
	objects vm.Value
	byHost  vm.Value // nil: the kind is not indexed by host
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
		kd := (*kindDoc)(nil)
		if prev != nil && prev.domain == domain && prev.kinds[name] != nil && prev.kinds[name].src == src {
			kd = prev.kinds[name]
		} else {
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
	keys := make([]string, len(k.Objects))
	for i, o := range k.Objects {
		keys[i] = o.Namespace + "/" + o.Name
	}
	// "ns/name" sorts otherwise than (ns, name): "a-b/x" before "a/x".
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	sortedKeys := make([]string, 0, len(keys))
	objs := make([]*ModelObject, 0, len(keys))
	for _, j := range order {
		if n := len(sortedKeys); n > 0 && sortedKeys[n-1] == keys[j] {
			objs[n-1] = k.Objects[j] // the same object twice: the last one
			continue
		}
		sortedKeys, objs = append(sortedKeys, keys[j]), append(objs, k.Objects[j])
	}
	values := make([]vm.Value, len(objs))
	for i, o := range objs {
		values[i] = o.Value
	}
	kd := &kindDoc{src: k, objects: vm.StringObject(sortedKeys, values)}
	if _, indexed := hostIndexed[k.Kind]; indexed {
		kd.byHost = hostIndex(k.Kind, objs, domain)
	}
	return kd
}

// hostIndex is byHost of one kind: each host named by objs (in their
// order), to the objects naming it. VirtualServices' and DestinationRules'
// short names are resolved in their namespaces; a ServiceEntry's hosts are
// taken as written, as Istio takes them.
func hostIndex(kind string, objs []*ModelObject, domain string) vm.Value {
	hosts := map[string][]vm.Value{}
	for _, o := range objs {
		for _, h := range o.Hosts {
			if kind != "ServiceEntry" {
				h = ResolveHost(h, o.Namespace, domain)
			}
			if list := hosts[h]; len(list) == 0 || list[len(list)-1] != o.Value {
				hosts[h] = append(list, o.Value)
			}
		}
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	lists := make([]vm.Value, len(names))
	for i, h := range names {
		lists[i] = vm.ArrayOf(hosts[h])
	}
	return vm.StringObject(names, lists)
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
