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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// Watcher caches the cluster's ServiceEntries, trimmed to what the rules
// read, and signals changes, coalesced: a burst of changes is one signal.
type Watcher struct {
	cache cache.Cache
	// events is signalled by every change; changed once per burst.
	events  chan struct{}
	changed chan struct{}
	synced  atomic.Bool
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
	scheme := runtime.NewScheme()
	if err := networkingv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := cache.New(rc, cache.Options{
		Scheme:   scheme,
		ByObject: map[client.Object]cache.ByObject{&networkingv1.ServiceEntry{}: {Transform: Trim}},
	})
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return &Watcher{cache: c, events: make(chan struct{}, 1), changed: make(chan struct{}, 1)}, nil
}

// Trim keeps of a ServiceEntry what the rules read (name, namespace, hosts,
// location), so that the cache holds little per object.
func Trim(obj any) (any, error) {
	se, ok := obj.(*networkingv1.ServiceEntry)
	if !ok {
		return obj, nil
	}
	out := &networkingv1.ServiceEntry{
		TypeMeta: se.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: se.Name, Namespace: se.Namespace, UID: se.UID, ResourceVersion: se.ResourceVersion,
		},
	}
	out.Spec.Hosts = se.Spec.Hosts
	out.Spec.Location = se.Spec.Location
	return out, nil
}

// Start runs the cache until ctx ends. Changes() fires after the first
// sync and on every change after it.
func (w *Watcher) Start(ctx context.Context) error {
	inf, err := w.cache.GetInformer(ctx, &networkingv1.ServiceEntry{})
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	notify := func() {
		if w.synced.Load() {
			signal(w.events)
		}
	}
	go coalesce(ctx, w.events, w.changed, burstQuiet, burstMax)
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.cache.Start(ctx) }()
	if !w.cache.WaitForCacheSync(ctx) {
		if err := <-errc; err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		return ctx.Err()
	}
	w.synced.Store(true)
	notify()
	return <-errc
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

// Snapshot is the inventory as cached, sorted by namespace and name.
func (w *Watcher) Snapshot(ctx context.Context) (engine.Inventory, error) {
	if !w.synced.Load() {
		return engine.Inventory{}, errors.New("inventory: not synced yet")
	}
	var list networkingv1.ServiceEntryList
	if err := w.cache.List(ctx, &list); err != nil {
		return engine.Inventory{}, fmt.Errorf("inventory: %w", err)
	}
	return FromList(list.Items), nil
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
