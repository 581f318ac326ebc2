package handler_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
)

// occupy starts n jobs on l that block until release is closed, and waits
// until they all run.
func occupy(t *testing.T, l *handler.Limit, n int, release chan struct{}) *sync.WaitGroup {
	t.Helper()
	started := make(chan struct{}, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Do(func() { started <- struct{}{}; <-release }); err != nil {
				t.Errorf("a job within the limit: %v", err)
			}
		}()
	}
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-started:
		case <-timeout:
			t.Fatalf("fewer than %d jobs run at once", n)
		}
	}
	return &wg
}

func TestLimitRunsInPlace(t *testing.T) {
	var none *handler.Limit
	for _, l := range []*handler.Limit{handler.NewLimit(2), none} {
		ran := false
		if err := l.Do(func() { ran = true }); err != nil || !ran {
			t.Errorf("Do: ran=%v err=%v", ran, err)
		}
		// A panic is the job's error, with or without a limit.
		err := l.Do(func() { panic("boom") })
		var pe *guard.PanicError
		if !errors.As(err, &pe) || pe.Where != "handler" || pe.Value != "boom" || len(pe.Stack) == 0 || err.Error() != "internal error: boom" {
			t.Errorf("a panicking job: %#v", err)
		}
	}
	if got := handler.NewLimit(0).Size(); got != 1 {
		t.Errorf("NewLimit(0).Size() = %d, want 1", got)
	}
}

// Panicking jobs give their slots back: after many, as many jobs as the
// limit still run at once, and one more is refused at once.
func TestLimitIsExactAfterPanics(t *testing.T) {
	const n = 3
	l := handler.NewLimit(n)
	for range 4 * n {
		if err := l.Do(func() { var m map[int]int; m[0]++ }); err == nil {
			t.Fatal("a panicking job: no error")
		}
	}
	release := make(chan struct{})
	wg := occupy(t, l, n, release)
	err := l.Do(func() { t.Error("ran beyond the limit") })
	var busy *handler.BusyError
	if !errors.As(err, &busy) || busy.Limit != n {
		t.Errorf("want a BusyError with the limit %d, got %#v", n, err)
	}
	if want := "3 admission requests are being evaluated, as many as this replica takes at once"; err == nil || err.Error() != want {
		t.Errorf("message %v, want %q", err, want)
	}
	close(release)
	wg.Wait()
	if err := l.Do(func() {}); err != nil {
		t.Errorf("once the jobs ended: %v", err)
	}
}
