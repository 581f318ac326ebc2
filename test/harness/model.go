package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MetricValue reads the sample named (with its labels, as exposed, such as
// egress_guard_inventory_updates_total{result="success"}) from g's metrics.
func (g *Guard) MetricValue(sample string) (float64, error) {
	resp, err := http.Get("http://" + g.MetricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s's metrics", sample, g)
}

// ModelUpdates is how many times g swapped its cluster model in
// (egress_guard_inventory_updates_total{result="success"}).
func (g *Guard) ModelUpdates() (float64, error) {
	return g.MetricValue(`egress_guard_inventory_updates_total{result="success"}`)
}

// WaitForModel waits until g has swapped its model since it had made
// before swaps, and then made no other for half a second: the changes
// written before the call are in it.
func (g *Guard) WaitForModel(ctx context.Context, before float64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last, since := before, time.Now()
	for time.Now().Before(deadline) {
		n, err := g.ModelUpdates()
		if err != nil {
			return err
		}
		if n != last {
			last, since = n, time.Now()
		}
		if last > before && time.Since(since) > 500*time.Millisecond {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not update its model within %s (%v swaps before, %v now)", g, timeout, before, last)
}

// ServiceEntriesFirst orders docs for deletion: the ServiceEntries first,
// the others in their order. While a ServiceEntry registers an external
// host, the deletion of the route taking it through the gateway is refused
// (EGR204), as it would be for any user.
func ServiceEntriesFirst(docs []*Doc) []*Doc {
	out := append([]*Doc(nil), docs...)
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Obj.GetKind() == "ServiceEntry" && out[j].Obj.GetKind() != "ServiceEntry"
	})
	return out
}
