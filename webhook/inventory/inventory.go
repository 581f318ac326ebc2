// Package inventory keeps serve's view of the cluster: its ServiceEntries
// and the cluster model (config.ModelKinds), the objects cross-object rules
// look at (data.inventory). A ServiceEntry in any namespace, exempt ones
// included, can make a host external.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

// Watcher follows the cluster's ServiceEntries, keeping of each what the
// rules read, and signals changes, coalesced: a burst of changes is one
// signal.
//
// It holds no cache of objects: a reflector lists and watches the
// ServiceEntries into entries, which keeps each one's namespace, name,
// hosts and location, and a Snapshot applies the changes since the last one
// to the last one's list.
//
// The other kinds of the model are followed each by a reflector of its own
// into a collection of the objects in the model's form; the ServiceEntries'
// reflector feeds the model's ServiceEntries too.
type Watcher struct {
	lw toolscache.ListerWatcher
	// events is signalled by every change; changed once per burst.
	events  chan struct{}
	changed chan struct{}
	synced  atomic.Bool
	entries entries
	// model holds the model's collections, the ServiceEntries' first (fed
	// by lw's reflector; the others run their own). Empty: no model.
	model []*collection
}

// A burst of changes ends when no change came for burstQuiet; a burst that
// goes on is signalled every burstMax. Each signal swaps the engine's data
// once (a new data document and its indexes, no compile).
const (
	burstQuiet = 5 * time.Millisecond
	burstMax   = 50 * time.Millisecond
)

// New builds a Watcher over the API server rc reaches, with the model's
// kinds kept for the gateway's namespace alone read in gatewayNamespace. It
// needs list and watch on every kind of config.ModelKinds, in every
// namespace but for those.
func New(rc *rest.Config, gatewayNamespace string) (*Watcher, error) {
	cs, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	ses := cs.NetworkingV1().ServiceEntries(metav1.NamespaceAll)
	// The clientset's watch can stream the initial list (watch-list),
	// as client-go's own informers take it.
	w := newWatcher(toolscache.ToListWatcherWithWatchListSemantics(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return ses.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return ses.Watch(ctx, o)
		},
	}, cs))
	others := []*collection{}
	for _, k := range config.ModelKinds {
		if k.Kind != "ServiceEntry" {
			others = append(others, dynamicCollection(dyn, k, gatewayNamespace))
		}
	}
	w.withModel(others...)
	return w, nil
}

func newWatcher(lw toolscache.ListerWatcher) *Watcher {
	return &Watcher{lw: lw, events: make(chan struct{}, 1), changed: make(chan struct{}, 1), entries: newEntries()}
}

// withModel makes w follow the cluster model: the ServiceEntries of w's own
// reflector, and the collections others.
func (w *Watcher) withModel(others ...*collection) {
	w.model = append([]*collection{newCollection("ServiceEntry", nil)}, others...)
	for _, c := range w.model {
		c.notify = w.notify
	}
}

// notify signals a change once everything is synced.
func (w *Watcher) notify() {
	if w.synced.Load() && notSynced(w.model) == "" {
		signal(w.events)
	}
}

// Start lists and watches the ServiceEntries until ctx ends. Changes()
// fires after the first list and on every change after it.
func (w *Watcher) Start(ctx context.Context) error {
	go coalesce(ctx, w.events, w.changed, burstQuiet, burstMax)
	for _, c := range w.model[min(1, len(w.model)):] {
		go c.run(ctx)
	}
	r := toolscache.NewReflectorWithOptions(w.lw, &networkingv1.ServiceEntry{}, (*watcherStore)(w),
		toolscache.ReflectorOptions{Name: "inventory"})
	r.RunWithContext(ctx)
	return nil
}

// watcherStore is the reflector's store: the Watcher's entries, and its
// change signal.
type watcherStore Watcher

func (s *watcherStore) Add(obj any) error {
	s.entries.put(obj)
	if s.model != nil {
		s.model[0].put(obj)
	}
	(*Watcher)(s).notify()
	return nil
}

func (s *watcherStore) Update(obj any) error { return s.Add(obj) }

func (s *watcherStore) Delete(obj any) error {
	s.entries.remove(obj)
	if s.model != nil {
		s.model[0].remove(obj)
	}
	(*Watcher)(s).notify()
	return nil
}

// Replace takes a list's ServiceEntries: the first list's, or one's after
// the watch could not go on.
func (s *watcherStore) Replace(list []any, _ string) error {
	s.entries.replace(list)
	if s.model != nil {
		s.model[0].replace(list)
		s.model[0].synced.Store(true)
	}
	s.synced.Store(true)
	(*Watcher)(s).notify()
	return nil
}

func (s *watcherStore) Resync() error { return nil }

// signal marks c, a channel of capacity one, without waiting: signals not
// yet received are one.
func signal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// coalesce signals out once per burst of signals on in: when no signal came
// for quiet, or max after the burst's first.
func coalesce(ctx context.Context, in <-chan struct{}, out chan<- struct{}, quiet, max time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-in:
		}
		wait, deadline := time.NewTimer(quiet), time.NewTimer(max)
	burst:
		for {
			select {
			case <-ctx.Done():
				wait.Stop()
				deadline.Stop()
				return
			case <-in:
				wait.Reset(quiet)
			case <-wait.C:
				break burst
			case <-deadline.C:
				break burst
			}
		}
		wait.Stop()
		deadline.Stop()
		signal(out)
	}
}

// Changes fires when the inventory may differ from the last Snapshot, once
// per burst of changes.
func (w *Watcher) Changes() <-chan struct{} { return w.changed }

// Snapshot is the inventory as listed and watched, sorted by namespace and
// name. It is the last one with the changes since applied: its cost grows
// with the changes, and with the ServiceEntries only by a copy of the list.
// The ServiceEntries' hosts are the watched objects': read, never written.
func (w *Watcher) Snapshot(context.Context) (engine.Inventory, error) {
	if !w.synced.Load() {
		return engine.Inventory{}, errors.New("inventory: not synced yet")
	}
	if kind := notSynced(w.model); kind != "" {
		return engine.Inventory{}, errNotSynced(kind)
	}
	inv := engine.Inventory{ServiceEntries: w.entries.snapshot()}
	if len(w.model) > 0 {
		inv.Model = &engine.Model{}
		for _, c := range w.model {
			inv.Model.Kinds = append(inv.Model.Kinds, c.snapshot())
		}
	}
	return inv, nil
}

// ModelErrors counts the objects left out of the model because they could
// not be converted into its form (none are expected: the API server sends
// valid JSON).
func (w *Watcher) ModelErrors() int { return modelErrors(w.model) }

// FromList converts ServiceEntries into the engine's inventory, sorted by
// namespace and name.
func FromList(items []*networkingv1.ServiceEntry) engine.Inventory {
	inv := engine.Inventory{ServiceEntries: make([]engine.ServiceEntryRef, 0, len(items))}
	for _, se := range items {
		inv.ServiceEntries = append(inv.ServiceEntries, engine.ServiceEntryRef{
			Namespace: se.Namespace, Name: se.Name,
			Hosts:    append([]string(nil), se.Spec.Hosts...),
			Location: se.Spec.Location.String(),
		})
	}
	sort.Slice(inv.ServiceEntries, func(i, j int) bool {
		a, b := inv.ServiceEntries[i], inv.ServiceEntries[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return inv
}
