package handler_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
)

// blocker runs jobs that signal when they start and wait for release.
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (b *blocker) job() { b.started <- struct{}{}; <-b.release }

// occupy runs n blocking jobs and waits until they all run.
func (b *blocker) occupy(t *testing.T, w *handler.Workers, n int) {
	t.Helper()
	for range n {
		go func() { _ = w.Do(context.Background(), b.job) }()
	}
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-b.started:
		case <-timeout:
			t.Fatalf("fewer than %d jobs run at once", n)
		}
	}
}

func pool(t *testing.T, n, queue int) *handler.Workers {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return handler.NewWorkers(ctx, n, queue)
}

func TestWorkersRunJobs(t *testing.T) {
	w := pool(t, 2, 0)
	ran := false
	if err := w.Do(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("Do: ran=%v err=%v", ran, err)
	}
	var none *handler.Workers
	ran = false
	if err := none.Do(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Errorf("nil workers run in place: ran=%v err=%v", ran, err)
	}
	// A panic is the job's error, with or without workers.
	for _, w := range []*handler.Workers{w, none} {
		err := w.Do(context.Background(), func() { panic("boom") })
		var pe *guard.PanicError
		if !errors.As(err, &pe) || pe.Where != "handler" || pe.Value != "boom" || len(pe.Stack) == 0 || err.Error() != "internal error: boom" {
			t.Errorf("a panicking job: %#v", err)
		}
	}
}

// A worker survives the panics of its jobs: after many, the pool still runs
// as many jobs at once as it has workers.
func TestWorkersSurvivePanics(t *testing.T) {
	const n = 3
	w := pool(t, n, 0)
	for range 4 * n {
		if err := w.Do(context.Background(), func() { var m map[int]int; m[0]++ }); err == nil {
			t.Fatal("a panicking job: no error")
		}
	}
	b := newBlocker()
	b.occupy(t, w, n)
	close(b.release)
}

// With every worker busy, a request is refused at once when the queue is
// full, and gives up waiting when its context ends; a request that gave up
// frees its place in the queue.
func TestWorkersQueueIsBounded(t *testing.T) {
	t.Run("no queue", func(t *testing.T) {
		w := pool(t, 2, 0)
		b := newBlocker()
		b.occupy(t, w, 2)
		err := w.Do(context.Background(), func() { t.Error("ran with every worker busy") })
		var busy *handler.BusyError
		if !errors.As(err, &busy) || busy.Err != nil || busy.Workers != 2 || busy.Queue != 0 {
			t.Errorf("want a BusyError for a full queue, got %#v", err)
		}
		close(b.release)
	})
	t.Run("queue of one", func(t *testing.T) {
		w := pool(t, 1, 1)
		b := newBlocker()
		b.occupy(t, w, 1)
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			err := w.Do(ctx, func() { t.Error("ran with the only worker busy") })
			cancel()
			var busy *handler.BusyError
			// Each waits (its place is free again after the last one gave
			// up), then gives up.
			if !errors.As(err, &busy) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("want a BusyError for a request that waited until its deadline, got %#v", err)
			}
		}
		close(b.release)
		if err := w.Do(context.Background(), func() {}); err != nil {
			t.Errorf("once the worker is free: %v", err)
		}
	})
}

// A request whose job runs past its context's end is answered at once; the
// job keeps its worker until it ends, and the pool serves on.
func TestWorkersGiveUpOnAJobPastTheDeadline(t *testing.T) {
	w := pool(t, 1, 1)
	b := newBlocker()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := w.Do(ctx, b.job)
	var busy *handler.BusyError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &busy) {
		t.Errorf("want the context's error, got %#v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Do(context.Background(), func() {}) }()
	close(b.release)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the next job: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the next job never ran")
	}
}
