package main

import (
	"testing"
	"time"
)

// A /proc/stat as Linux writes it: user nice system idle iowait irq softirq
// steal guest guest_nice, in ticks of 10 ms.
const procStat = `cpu  500 0 300 9000 100 0 20 5 0 0
cpu0 200 0 100 4500 50 0 10 2 0 0
cpu1 300 0 200 4500 50 0 10 3 0 0
intr 12345
`

func TestParseCPUTimes(t *testing.T) {
	for _, tc := range []struct {
		cpus map[string]bool
		want time.Duration
		ok   bool
	}{
		// busy: user + nice + system + irq + softirq + steal
		{map[string]bool{"cpu0": true}, (200 + 100 + 10 + 2) * 10 * time.Millisecond, true},
		{map[string]bool{"cpu0": true, "cpu1": true}, (312 + 513) * 10 * time.Millisecond, true},
		{map[string]bool{"cpu7": true}, 0, false},
	} {
		if got := parseCPUTimes(procStat, tc.cpus); got.ok != tc.ok || got.busy != tc.want {
			t.Errorf("%v: %+v, want busy %s ok %v", tc.cpus, got, tc.want, tc.ok)
		}
	}
	if got := parseCPUTimes("cpu0 1 x 3 4 5 6 7 8\n", map[string]bool{"cpu0": true}); got.ok {
		t.Errorf("a malformed line: %+v", got)
	}
}

// The lists taskset takes; anything else is not ok.
func TestReadCPUTimesLists(t *testing.T) {
	for _, list := range []string{"", "x", "0-y", "100000"} {
		if c := readCPUTimes(list); c.ok {
			t.Errorf("%q: %+v, want not ok", list, c)
		}
	}
}
