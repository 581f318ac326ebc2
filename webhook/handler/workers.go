package handler

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/egress-guard/egress-guard/webhook/guard"
)

// Workers run evaluations on long-lived goroutines. Policy evaluation
// recurses deeply; on the short-lived goroutine the HTTP server starts for
// each request the stack would grow, by copying, on every request (measured:
// a fifth of the server's CPU). The workers' stacks stay grown between
// requests.
//
// The pool also bounds the work in flight: n jobs run and at most queue
// requests wait for a worker; a request beyond them is refused at once
// (BusyError), and a waiting request gives up when its context ends. A job
// that panics is answered with a *guard.PanicError and its worker goes on
// with the next job, so the pool keeps its size.
type Workers struct {
	jobs chan *job
	// slots hold one token per job admitted, running or waiting; a job's
	// token is returned when it ends, or when its request gives up waiting.
	slots chan struct{}
	n     int
	queue int
}

type job struct {
	f    func()
	err  error
	done chan struct{}
}

// run runs the job, with a panic contained; its worker survives it.
func (j *job) run() {
	defer close(j.done)
	defer func() {
		if v := recover(); v != nil {
			j.err = &guard.PanicError{Where: WhereHandler, Value: v, Stack: debug.Stack()}
		}
	}()
	j.f()
}

// NewWorkers starts n workers (at least one) that stop when ctx ends; up to
// queue requests (none when not positive) may wait for one.
func NewWorkers(ctx context.Context, n, queue int) *Workers {
	n, queue = max(n, 1), max(queue, 0)
	w := &Workers{jobs: make(chan *job), slots: make(chan struct{}, n+queue), n: n, queue: queue}
	for range n {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-w.jobs:
					j.run()
					<-w.slots
				}
			}
		}()
	}
	return w
}

// Size is the number of workers.
func (w *Workers) Size() int { return w.n }

// BusyError is Do's answer when no worker took the job: every worker was busy
// and the queue full (Err nil), or the request's context ended while it
// waited (Err is the context's error).
type BusyError struct {
	Workers, Queue int
	Err            error
}

func (e *BusyError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("all %d evaluation workers are busy and %d requests wait for one", e.Workers, e.Queue)
	}
	return fmt.Sprintf("no evaluation worker was free before the request's deadline (%d workers, all busy): %v", e.Workers, e.Err)
}

func (e *BusyError) Unwrap() error { return e.Err }

// Do runs f on a worker and waits for it; without workers (nil) it runs f in
// place. It returns a *BusyError when no worker takes f, and a
// *guard.PanicError when f panics. When ctx ends while f runs, Do returns
// ctx's error at once and f runs on to its end, holding its worker: f must
// not share what it writes with Do's caller unless Do returned nil.
func (w *Workers) Do(ctx context.Context, f func()) error {
	j := &job{f: f, done: make(chan struct{})}
	if w == nil {
		j.run()
		return j.err
	}
	select {
	case w.slots <- struct{}{}:
	default:
		return &BusyError{Workers: w.n, Queue: w.queue}
	}
	select {
	case w.jobs <- j:
	case <-ctx.Done():
		<-w.slots
		return &BusyError{Workers: w.n, Queue: w.queue, Err: ctx.Err()}
	}
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		select {
		case <-j.done: // finished as the context ended: the answer stands
			return j.err
		default:
			return ctx.Err()
		}
	}
}
