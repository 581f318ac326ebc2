package main

import (
	"os"
	"testing"
)

func TestReadCPUTimes(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat")
	}
	if c := readCPUTimes("0"); !c.ok || c.busy <= 0 {
		t.Errorf("CPU 0: %+v", c)
	}
	for _, list := range []string{"", "x", "0-y", "100000"} {
		if c := readCPUTimes(list); c.ok {
			t.Errorf("%q: %+v, want not ok", list, c)
		}
	}
}
