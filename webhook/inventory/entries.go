package inventory

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// entries are the cached ServiceEntries as the engine takes them: the list
// of the last snapshot, sorted by namespace and name, and the changes the
// cache's events made since. A snapshot merges the two into a new list;
// those it gave before stay as they were.
type entries struct {
	mu   sync.Mutex
	last []engine.ServiceEntryRef
	// changed holds the ServiceEntries added or updated since the last
	// snapshot, and nil for those deleted.
	changed map[types.NamespacedName]*engine.ServiceEntryRef
}

func newEntries() entries {
	return entries{last: []engine.ServiceEntryRef{}, changed: map[types.NamespacedName]*engine.ServiceEntryRef{}}
}

// put records obj, a ServiceEntry added or updated (another object is
// ignored).
func (s *entries) put(obj any) {
	se, ok := obj.(*networkingv1.ServiceEntry)
	if !ok {
		return
	}
	ref := refOf(se)
	s.mu.Lock()
	s.changed[types.NamespacedName{Namespace: se.Namespace, Name: se.Name}] = &ref
	s.mu.Unlock()
}

// remove records obj deleted: a ServiceEntry, or the cache's tombstone of
// one.
func (s *entries) remove(obj any) {
	var key types.NamespacedName
	switch o := obj.(type) {
	case *networkingv1.ServiceEntry:
		key = types.NamespacedName{Namespace: o.Namespace, Name: o.Name}
	case toolscache.DeletedFinalStateUnknown:
		ns, name, err := toolscache.SplitMetaNamespaceKey(o.Key)
		if err != nil {
			return
		}
		key = types.NamespacedName{Namespace: ns, Name: name}
	default:
		return
	}
	s.mu.Lock()
	s.changed[key] = nil
	s.mu.Unlock()
}

// replace records the ServiceEntries of a list: those listed added or
// updated, the others deleted.
func (s *entries) replace(list []any) {
	listed := make(map[types.NamespacedName]bool, len(list))
	for _, obj := range list {
		if se, ok := obj.(*networkingv1.ServiceEntry); ok {
			listed[types.NamespacedName{Namespace: se.Namespace, Name: se.Name}] = true
		}
	}
	s.mu.Lock()
	for i := range s.last {
		if k := (types.NamespacedName{Namespace: s.last[i].Namespace, Name: s.last[i].Name}); !listed[k] {
			s.changed[k] = nil
		}
	}
	for k := range s.changed {
		if !listed[k] {
			s.changed[k] = nil
		}
	}
	s.mu.Unlock()
	for _, obj := range list {
		s.put(obj)
	}
}

// snapshot is the ServiceEntries now, sorted by namespace and name. The
// caller does not modify it.
func (s *entries) snapshot() []engine.ServiceEntryRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.changed) == 0 {
		return s.last
	}
	keys := make([]types.NamespacedName, 0, len(s.changed))
	for k := range s.changed {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	out := make([]engine.ServiceEntryRef, 0, len(s.last)+len(keys))
	i := 0
	for _, k := range keys {
		for i < len(s.last) && refBefore(&s.last[i], k) {
			out = append(out, s.last[i])
			i++
		}
		if i < len(s.last) && s.last[i].Namespace == k.Namespace && s.last[i].Name == k.Name {
			i++ // replaced or deleted
		}
		if ref := s.changed[k]; ref != nil {
			out = append(out, *ref)
		}
	}
	out = append(out, s.last[i:]...)
	s.last = slices.Clip(out)
	if len(s.changed) > 1024 {
		// The first sync's: not kept for the bursts that follow.
		s.changed = map[types.NamespacedName]*engine.ServiceEntryRef{}
	} else {
		clear(s.changed)
	}
	return s.last
}

// refBefore: ref comes before the ServiceEntry k by namespace and name.
func refBefore(ref *engine.ServiceEntryRef, k types.NamespacedName) bool {
	if ref.Namespace != k.Namespace {
		return ref.Namespace < k.Namespace
	}
	return ref.Name < k.Name
}

// refOf is what the rules read of se. Its hosts are se's, not copied: the
// cache's objects are never written.
func refOf(se *networkingv1.ServiceEntry) engine.ServiceEntryRef {
	return engine.ServiceEntryRef{
		Namespace: se.Namespace, Name: se.Name,
		Hosts:    se.Spec.Hosts,
		Location: se.Spec.Location.String(),
	}
}
