package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// The objects the size benchmarks review, as the bench's mix writes them: a
// ServiceEntry and a VirtualService for a host the allow list names, and for
// one it does not.
var sizeRequests = []struct{ name, kind, obj string }{
	{"SE-listed", "ServiceEntry", `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry",
"metadata":{"name":"test-com","namespace":"default","labels":{"app":"sleep","team":"payments"},"annotations":{"owner":"payments@example.com"}},
"spec":{"hosts":["test.com"],"location":"MESH_EXTERNAL","resolution":"DNS",
"ports":[{"number":80,"name":"http","protocol":"HTTP"},{"number":443,"name":"https","protocol":"HTTPS"}]}}`},
	{"SE-unlisted", "ServiceEntry", `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry",
"metadata":{"name":"evil-example-com","namespace":"default","labels":{"app":"sleep"}},
"spec":{"hosts":["evil.example.com"],"location":"MESH_EXTERNAL","resolution":"DNS",
"ports":[{"number":443,"name":"https","protocol":"HTTPS"}]}}`},
	{"VS-listed", "VirtualService", `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
"metadata":{"name":"test-com","namespace":"default","labels":{"app":"sleep"}},
"spec":{"hosts":["test.com"],"http":[{"match":[{"port":80}],"route":[{"destination":{"host":"test.com","port":{"number":80}},"weight":100}],
"timeout":"10s","retries":{"attempts":3,"perTryTimeout":"2s"}}]}}`},
	{"VS-unlisted", "VirtualService", `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
"metadata":{"name":"evil-example-com","namespace":"default"},
"spec":{"hosts":["evil.example.com"],"http":[{"match":[{"port":80}],"route":[{"destination":{"host":"evil.example.com","port":{"number":80}}}]}]}}`},
}

// sizeConfig is the bench's configuration with n allow entries: its three,
// and n-3 more, half of them wildcards, some for listed namespaces only.
func sizeConfig(tb testing.TB, n int) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(`apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/egress-gateway}
enforcement: deny
allow:
- hosts: ["test.com"]
  ports: [80, 443]
  origination: {mode: MUTUAL, port: 443, credentialName: test.client, sni: test.com}
- hosts: ["*.wikipedia.org"]
  ports: [443]
- hosts: ["mysql.fqdn.example"]
  ports: [3306, 13306]
`))
	if err != nil {
		tb.Fatal(err)
	}
	for i := len(cfg.Allow); i < n; i++ {
		e := config.AllowEntry{Hosts: []string{fmt.Sprintf("api%d.partner%d.example.org", i, i%97)}, Ports: []uint32{443}}
		if i%2 == 1 {
			e.Hosts = []string{fmt.Sprintf("*.svc%d.example.net", i)}
		}
		if i%5 == 0 {
			e.Namespaces = []string{"team-a", "team-b"}
		}
		cfg.Allow = append(cfg.Allow, e)
	}
	return cfg
}

// sizeInventory is n MESH_EXTERNAL ServiceEntries, half of them wildcards,
// sorted by namespace and name.
func sizeInventory(n int) Inventory {
	inv := Inventory{ServiceEntries: make([]ServiceEntryRef, 0, n)}
	for i := range n {
		host := fmt.Sprintf("db%d.legacy%d.example.com", i, i%89)
		if i%2 == 1 {
			host = fmt.Sprintf("*.lan%d.office.example", i)
		}
		inv.ServiceEntries = append(inv.ServiceEntries, ServiceEntryRef{
			Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("se-%d", i), Hosts: []string{host}, Location: "MESH_EXTERNAL",
		})
	}
	// In serve's order: by namespace and name.
	slices.SortFunc(inv.ServiceEntries, func(a, b ServiceEntryRef) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return inv
}

// benchReviews evaluates each request's intents and violations on e, one
// sub-benchmark per request.
func benchReviews(b *testing.B, e *Engine) {
	ctx := context.Background()
	for _, r := range sizeRequests {
		b.Run(r.name, func(b *testing.B) {
			in, err := e.Input(request(r.kind, r.obj))
			if err != nil {
				b.Fatal(err)
			}
			loopReview(ctx, b, e, in)
		})
	}
}

// loopReview evaluates in's intents and violations on e, b.N times.
func loopReview(ctx context.Context, b *testing.B, e *Engine, in *Prepared) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Intents(ctx, in); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Violations(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllowListSize: a review's cost with 10, 1,000 and 10,000 allow
// entries. With the allow list indexed it does not grow with the list.
func BenchmarkAllowListSize(b *testing.B) {
	for _, ev := range Evaluators {
		for _, n := range []int{10, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/entries=%d", ev, n), func(b *testing.B) {
				e, err := New(context.Background(), Options{Config: sizeConfig(b, n), Evaluator: ev})
				if err != nil {
					b.Fatal(err)
				}
				benchReviews(b, e)
			})
		}
	}
}

// BenchmarkInventorySize: a review's cost with 10 and 10,000 ServiceEntries
// in the inventory, half of them wildcards.
func BenchmarkInventorySize(b *testing.B) {
	for _, ev := range Evaluators {
		for _, n := range []int{10, 10000} {
			b.Run(fmt.Sprintf("%s/serviceEntries=%d", ev, n), func(b *testing.B) {
				e, err := New(context.Background(), Options{Config: sizeConfig(b, 10), Inventory: sizeInventory(n), Evaluator: ev})
				if err != nil {
					b.Fatal(err)
				}
				benchReviews(b, e)
			})
		}
	}
}
