// Package inventory keeps serve's view of the cluster's ServiceEntries: the
// objects cross-object rules look at (data.inventory). A ServiceEntry in any
// namespace, exempt ones included, can make a host external.
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
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

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
type Watcher struct {
	lw toolscache.ListerWatcher
	// events is signalled by every change; changed once per burst.
	events  chan struct{}
	changed chan struct{}
	synced  atomic.Bool
	entries entries
}

// A burst of changes ends when no change came for burstQuiet; a burst that
// goes on is signalled every burstMax. Each signal swaps the engine's data
// once (a new data document and its indexes, no compile).
const (
	burstQuiet = 5 * time.Millisecond
	burstMax   = 50 * time.Millisecond
)

// New builds a Watcher over the API server rc reaches. It needs list and
// watch on serviceentries.networking.istio.io in every namespace.
func New(rc *rest.Config) (*Watcher, error) {
	cs, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	ses := cs.NetworkingV1().ServiceEntries(metav1.NamespaceAll)
	// The clientset's watch can stream the initial list (watch-list),
	// as client-go's own informers take it.
	return newWatcher(toolscache.ToListWatcherWithWatchListSemantics(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return ses.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return ses.Watch(ctx, o)
		},
	}, cs)), nil
}

func newWatcher(lw toolscache.ListerWatcher) *Watcher {
	return &Watcher{lw: lw, events: make(chan struct{}, 1), changed: make(chan struct{}, 1), entries: newEntries()}
}

// Start lists and watches the ServiceEntries until ctx ends. Changes()
// fires after the first list and on every change after it.
func (w *Watcher) Start(ctx context.Context) error {
	go coalesce(ctx, w.events, w.changed, burstQuiet, burstMax)
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
	s.notify()
	return nil
}

func (s *watcherStore) Update(obj any) error {
	s.entries.put(obj)
	s.notify()
	return nil
}

func (s *watcherStore) Delete(obj any) error {
	s.entries.remove(obj)
	s.notify()
	return nil
}

// Replace takes a list's ServiceEntries: the first list's, or one's after
// the watch could not go on.
func (s *watcherStore) Replace(list []any, _ string) error {
	s.entries.replace(list)
	s.synced.Store(true)
	s.notify()
	return nil
}

func (s *watcherStore) Resync() error { return nil }

func (s *watcherStore) notify() {
	if s.synced.Load() {
		signal(s.events)
	}
}

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
	return engine.Inventory{ServiceEntries: w.entries.snapshot()}, nil
}

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
