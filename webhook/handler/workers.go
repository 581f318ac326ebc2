package handler

import (
	"context"
)

// Workers run evaluations on long-lived goroutines. Policy evaluation
// recurses deeply; on the short-lived goroutine the HTTP server starts for
// each request the stack would grow, by copying, on every request (measured:
// a fifth of the server's CPU). The workers' stacks stay grown between
// requests. The pool also bounds how many evaluations run at once.
type Workers struct {
	jobs chan func()
}

// NewWorkers starts n workers that stop when ctx ends.
func NewWorkers(ctx context.Context, n int) *Workers {
	w := &Workers{jobs: make(chan func())}
	for range max(n, 1) {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-w.jobs:
					job()
				}
			}
		}()
	}
	return w
}

// Do runs f on a worker and waits for it; without workers (nil) it runs f
// in place. It gives up when ctx ends before a worker is free.
func (w *Workers) Do(ctx context.Context, f func()) error {
	if w == nil {
		f()
		return nil
	}
	done := make(chan struct{})
	select {
	case w.jobs <- func() { defer close(done); f() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}
