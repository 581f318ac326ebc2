package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

// collection is one kind of the cluster model as a reflector lists and
// watches it: each object in the model's form (engine.NewModelObject, a
// Secret without its values), and the ModelKind of the last snapshot while
// nothing changed, so that an unchanged kind is the same ModelKind from
// snapshot to snapshot (and the engine's swap reuses what it built of it).
type collection struct {
	kind   string
	lw     toolscache.ListerWatcher
	synced atomic.Bool
	// notify is called after every change (and the lists).
	notify func()

	mu      sync.Mutex
	objects map[string]*engine.ModelObject
	// last is the last snapshot's kind; pending the objects put (nil:
	// deleted) since, by key, unless relisted: a list replaced them all.
	last     *engine.ModelKind
	pending  map[string]*engine.ModelObject
	relisted bool
	// errors counts objects that could not be converted (left out).
	errors int
}

func newCollection(kind string, lw toolscache.ListerWatcher) *collection {
	return &collection{kind: kind, lw: lw, objects: map[string]*engine.ModelObject{}, pending: map[string]*engine.ModelObject{}}
}

// dynamicCollection follows the objects of k through the dynamic client:
// in every namespace, or in the gateway's for the kinds kept there alone.
func dynamicCollection(dyn dynamic.Interface, k config.ModelKind, gatewayNamespace string) *collection {
	namespace := metav1.NamespaceAll
	if k.GatewayNamespace {
		namespace = gatewayNamespace
	}
	res := dyn.Resource(schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Resource}).Namespace(namespace)
	return newCollection(k.Kind, &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	})
}

// run lists and watches until ctx ends.
func (c *collection) run(ctx context.Context) {
	r := toolscache.NewReflectorWithOptions(c.lw, &unstructured.Unstructured{}, (*collectionStore)(c),
		toolscache.ReflectorOptions{Name: "inventory " + c.kind})
	r.RunWithContext(ctx)
}

// modelObject converts obj, an object of the collection's kind, into the
// model's form.
func (c *collection) modelObject(obj any) (*engine.ModelObject, bool) {
	var raw []byte
	var err error
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		if c.kind == "Secret" {
			engine.DropSecretValues(o.Object)
		}
		raw, err = o.MarshalJSON()
	case metav1.Object:
		// A typed object (the ServiceEntries' reflector's).
		raw, err = json.Marshal(o)
	default:
		return nil, false
	}
	if err == nil {
		var mo *engine.ModelObject
		if mo, err = engine.NewModelObject(c.kind, raw); err == nil {
			return mo, true
		}
	}
	c.mu.Lock()
	c.errors++
	c.mu.Unlock()
	return nil, false
}

func (c *collection) put(obj any) {
	o, ok := c.modelObject(obj)
	if !ok {
		return
	}
	key := o.Namespace + "/" + o.Name
	c.mu.Lock()
	c.objects[key] = o
	c.pending[key] = o
	c.mu.Unlock()
}

func (c *collection) remove(obj any) {
	var key string
	switch o := obj.(type) {
	case toolscache.DeletedFinalStateUnknown:
		key = o.Key
	case metav1.Object:
		key = o.GetNamespace() + "/" + o.GetName()
	default:
		return
	}
	c.mu.Lock()
	if _, ok := c.objects[key]; ok {
		delete(c.objects, key)
		c.pending[key] = nil
	}
	c.mu.Unlock()
}

func (c *collection) replace(list []any) {
	objects := make(map[string]*engine.ModelObject, len(list))
	for _, obj := range list {
		if o, ok := c.modelObject(obj); ok {
			objects[o.Namespace+"/"+o.Name] = o
		}
	}
	c.mu.Lock()
	c.objects, c.relisted = objects, true
	clear(c.pending)
	c.mu.Unlock()
}

// snapshot is the kind's objects now: the same ModelKind as the last one
// while nothing changed; else one that says what changed since it (Base,
// Changed), unless a list replaced everything.
func (c *collection) snapshot() *engine.ModelKind {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && !c.relisted && len(c.pending) == 0 {
		return c.last
	}
	k := &engine.ModelKind{Kind: c.kind, Objects: make([]*engine.ModelObject, 0, len(c.objects))}
	for _, o := range c.objects {
		k.Objects = append(k.Objects, o)
	}
	if c.last != nil && !c.relisted {
		// The last kind's own base has served its swap: dropped, so that
		// the kinds do not hold every version before them.
		c.last.Base, c.last.Changed = nil, nil
		k.Base, k.Changed = c.last, c.pending
		c.pending = map[string]*engine.ModelObject{}
	} else {
		clear(c.pending)
	}
	c.last, c.relisted = k, false
	return k
}

// collectionStore is a collection as its reflector's store.
type collectionStore collection

func (s *collectionStore) c() *collection { return (*collection)(s) }

func (s *collectionStore) Add(obj any) error {
	s.c().put(obj)
	s.changed()
	return nil
}

func (s *collectionStore) Update(obj any) error {
	s.c().put(obj)
	s.changed()
	return nil
}

func (s *collectionStore) Delete(obj any) error {
	s.c().remove(obj)
	s.changed()
	return nil
}

func (s *collectionStore) Replace(list []any, _ string) error {
	s.c().replace(list)
	s.synced.Store(true)
	s.changed()
	return nil
}

func (s *collectionStore) Resync() error { return nil }

func (s *collectionStore) changed() {
	if s.notify != nil {
		s.notify()
	}
}

// notSynced names the first of cs not synced yet, or "".
func notSynced(cs []*collection) string {
	for _, c := range cs {
		if !c.synced.Load() {
			return c.kind
		}
	}
	return ""
}

// modelErrors counts the objects of cs left out of the model.
func modelErrors(cs []*collection) int {
	n := 0
	for _, c := range cs {
		c.mu.Lock()
		n += c.errors
		c.mu.Unlock()
	}
	return n
}

func errNotSynced(kind string) error { return fmt.Errorf("inventory: %s not synced yet", kind) }
