package handler

import (
	"fmt"
	"runtime/debug"

	"github.com/egress-guard/egress-guard/webhook/guard"
)

// Limit bounds the admission requests this replica evaluates at once. An
// evaluation runs on its request's own goroutine: handing it to another
// goroutine and back costs two wake-ups per request, and on a busy CPU the
// woken goroutine runs next in the waker's time slice, so a request and its
// helper could keep the CPU between them while other connections waited
// (measured: a p99.9 eight times the no-op server's, against two to three
// times without the hand-off). The HTTP server's goroutines are the pool.
//
// A request beyond the limit is refused at once (BusyError), never queued:
// the API server retries it, then applies the webhook's failurePolicy. A
// request's deadline is enforced by the evaluation itself, which checks its
// context (both evaluators do).
type Limit struct {
	// slots hold one token per request evaluated.
	slots chan struct{}
}

// NewLimit lets n requests (at least one) be evaluated at once.
func NewLimit(n int) *Limit {
	return &Limit{slots: make(chan struct{}, max(n, 1))}
}

// Size is the number of requests evaluated at once.
func (l *Limit) Size() int { return cap(l.slots) }

// BusyError is Do's answer when the limit is reached.
type BusyError struct{ Limit int }

func (e *BusyError) Error() string {
	return fmt.Sprintf("%d admission requests are being evaluated, as many as this replica takes at once", e.Limit)
}

// Do runs f in place when the limit allows (always, for a nil Limit), and
// returns a *BusyError otherwise. A panic in f is returned as a
// *guard.PanicError; the slot is free again either way.
func (l *Limit) Do(f func()) (err error) {
	if l != nil {
		select {
		case l.slots <- struct{}{}:
			defer func() { <-l.slots }()
		default:
			return &BusyError{Limit: cap(l.slots)}
		}
	}
	defer func() {
		if v := recover(); v != nil {
			err = &guard.PanicError{Where: WhereHandler, Value: v, Stack: debug.Stack()}
		}
	}()
	f()
	return nil
}
