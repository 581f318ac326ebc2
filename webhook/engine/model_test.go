package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

func modelObject(t testing.TB, kind, raw string) *ModelObject {
	t.Helper()
	o, err := NewModelObject(kind, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// The model keeps what rules read of an object: no status, no field
// bookkeeping, no kubectl copy of the object, and of a Secret no value.
func TestNewModelObject(t *testing.T) {
	vs := modelObject(t, "VirtualService", `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
		"metadata":{"name":"r","namespace":"shop","uid":"u1","resourceVersion":"7","labels":{"app":"r"},
			"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"big\":1}","team":"a"},
			"managedFields":[{"manager":"kubectl"}]},
		"spec":{"hosts":["reviews","api.example.com"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]},
		"status":{"observedGeneration":3}}`)
	want := ast.MustParseTerm(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
		"metadata":{"name":"r","namespace":"shop","labels":{"app":"r"},"annotations":{"team":"a"}},
		"spec":{"hosts":["reviews","api.example.com"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]}}`).Value
	if got := vm.ToAST(vs.Value); ast.Compare(got, want) != 0 {
		t.Errorf("VirtualService:\n%v\nwant\n%v", got, want)
	}
	if vs.Namespace != "shop" || vs.Name != "r" || !slices.Equal(vs.Hosts, []string{"reviews", "api.example.com"}) {
		t.Errorf("VirtualService: %s/%s hosts %v", vs.Namespace, vs.Name, vs.Hosts)
	}
	dr := modelObject(t, "DestinationRule", `{"metadata":{"name":"d","namespace":"istio-system"},"spec":{"host":"istio-egressgateway"}}`)
	if !slices.Equal(dr.Hosts, []string{"istio-egressgateway"}) {
		t.Errorf("DestinationRule hosts %v", dr.Hosts)
	}
	secret := modelObject(t, "Secret", `{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/tls",
		"metadata":{"name":"test.client","namespace":"istio-system"},
		"data":{"tls.key":"c2VjcmV0LWtleQ==","tls.crt":"Y2VydA=="},"stringData":{"ca.crt":"plain-ca","tls.crt":"x"}}`)
	want = ast.MustParseTerm(`{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/tls",
		"metadata":{"name":"test.client","namespace":"istio-system"},"keys":["ca.crt","tls.crt","tls.key"]}`).Value
	got := vm.ToAST(secret.Value)
	if ast.Compare(got, want) != 0 {
		t.Errorf("Secret:\n%v\nwant\n%v", got, want)
	}
	for _, value := range []string{"c2VjcmV0LWtleQ==", "Y2VydA==", "plain-ca"} {
		if strings.Contains(got.String(), value) {
			t.Errorf("the Secret's value %s is kept", value)
		}
	}
	for _, bad := range []string{`[1]`, `{"metadata":`, ``} {
		if _, err := NewModelObject("Gateway", []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestResolveHost(t *testing.T) {
	for _, tc := range []struct{ host, ns, want string }{
		{"reviews", "shop", "reviews.shop.svc.cluster.local"},
		{"reviews.shop", "other", "reviews.shop"},
		{"api.example.com", "shop", "api.example.com"},
		{"*", "shop", "*"},
		{"*.example.com", "shop", "*.example.com"},
		{"10.0.0.1", "shop", "10.0.0.1"},
		{"2001:db8::1", "shop", "2001:db8::1"},
		{"reviews", "", "reviews.svc.cluster.local"},
		{"", "shop", ""},
	} {
		if got := ResolveHost(tc.host, tc.ns, "cluster.local"); got != tc.want {
			t.Errorf("ResolveHost(%q, %q) = %q, want %q", tc.host, tc.ns, got, tc.want)
		}
	}
}

// wantModel is data.inventory.objects and byHost of m, derived the plain
// way.
func wantModel(m *Model, domain string) (ast.Value, ast.Value) {
	objects, byHost := ast.NewObject(), ast.NewObject()
	kinds := map[string]*ModelKind{}
	for _, k := range m.Kinds {
		kinds[k.Kind] = k
	}
	for _, mk := range config.ModelKinds {
		if kinds[mk.Kind] == nil {
			kinds[mk.Kind] = &ModelKind{Kind: mk.Kind}
		}
	}
	for name, k := range kinds {
		objs := map[string]*ModelObject{}
		for _, o := range k.Objects {
			objs[o.Namespace+"/"+o.Name] = o
		}
		kindObjects := ast.NewObject()
		hosts := map[string][]*ast.Term{}
		keys := make([]string, 0, len(objs))
		for key := range objs {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range keys {
			o := objs[key]
			kindObjects.Insert(ast.StringTerm(key), ast.NewTerm(vm.ToAST(o.Value)))
			seen := map[string]bool{}
			for _, h := range o.Hosts {
				if name != "ServiceEntry" {
					h = ResolveHost(h, o.Namespace, domain)
				}
				if !seen[h] {
					seen[h] = true
					hosts[h] = append(hosts[h], ast.NewTerm(vm.ToAST(o.Value)))
				}
			}
		}
		objects.Insert(ast.StringTerm(name), ast.NewTerm(kindObjects))
		if _, ok := hostIndexed[name]; ok {
			index := ast.NewObject()
			for h, list := range hosts {
				index.Insert(ast.StringTerm(h), ast.ArrayTerm(list...))
			}
			byHost.Insert(ast.StringTerm(name), ast.NewTerm(index))
		}
	}
	return objects, byHost
}

// A model swap equals a build from nothing over random changes, edited from
// the last document (Base and Changed) or built again, reuses the kinds that
// did not change, and leaves the documents before it alone.
func TestModelSwapEqualsRebuild(t *testing.T) {
	kinds := []string{"ServiceEntry", "VirtualService", "DestinationRule", "Gateway", "Secret"}
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 11))
		m := &Model{}
		state := make([]map[string]*ModelObject, len(kinds))
		for i, k := range kinds {
			m.Kinds = append(m.Kinds, &ModelKind{Kind: k})
			state[i] = map[string]*ModelObject{}
		}
		var prev *modelDoc
		var history []*modelDoc
		for step := range 25 {
			next := &Model{Kinds: slices.Clone(m.Kinds)}
			changed := map[string]bool{}
			for range 1 + r.IntN(3) {
				i := r.IntN(len(kinds))
				changes := map[string]*ModelObject{}
				for range 1 + r.IntN(4) {
					ns, name := fmt.Sprintf("ns%d", r.IntN(3)), fmt.Sprintf("o%d", r.IntN(6))
					if r.IntN(4) == 0 {
						ns = "ns-" + ns // sorts otherwise as "ns/name"
					}
					key := ns + "/" + name
					if _, ok := state[i][key]; ok && r.IntN(3) == 0 {
						changes[key] = nil
						continue
					}
					host := fmt.Sprintf("h%d", r.IntN(4))
					if r.IntN(2) == 0 {
						host += ".example.com"
					}
					raw := fmt.Sprintf(`{"metadata":{"name":%q,"namespace":%q},"spec":{"hosts":[%q,%q],"host":%q,"n":%d}}`, name, ns, host, host, host, step)
					changes[key] = modelObject(t, kinds[i], raw)
				}
				for key, o := range changes {
					if o == nil {
						delete(state[i], key)
					} else {
						state[i][key] = o
					}
				}
				k := &ModelKind{Kind: kinds[i]}
				for _, o := range state[i] {
					k.Objects = append(k.Objects, o)
				}
				if r.IntN(4) > 0 {
					k.Base, k.Changed = next.Kinds[i], changes
				}
				next.Kinds[i] = k
				changed[kinds[i]] = true
			}
			from := prev
			if r.IntN(8) == 0 && len(history) > 1 {
				// From an older document: its kinds' states are owned by
				// later ones, and are built again.
				from = history[r.IntN(len(history)-1)]
			}
			got := buildModel(from, next, "cluster.local")
			fresh := buildModel(nil, next, "cluster.local")
			wantObjects, wantByHost := wantModel(next, "cluster.local")
			for _, d := range []*modelDoc{got, fresh} {
				if o, h := vm.ToAST(d.objects), vm.ToAST(d.byHost); ast.Compare(o, wantObjects) != 0 || ast.Compare(h, wantByHost) != 0 {
					t.Fatalf("seed %d step %d:\n%v\n%v\nwant\n%v\n%v", seed, step, o, h, wantObjects, wantByHost)
				}
			}
			if from == prev && prev != nil {
				for _, k := range kinds {
					if !changed[k] && got.kinds[k] != prev.kinds[k] {
						t.Fatalf("seed %d step %d: unchanged %s built again", seed, step, k)
					}
				}
				before, _ := wantModel(m, "cluster.local")
				if o := vm.ToAST(vm.FromAST(vm.ToAST(prev.objects))); ast.Compare(o, before) != 0 {
					t.Fatalf("seed %d step %d: the last document changed", seed, step)
				}
			}
			history = append(history, got)
			prev, m = got, next
		}
	}
}

// The rules read the model as data.inventory.objects and byHost, under both
// evaluators; a swap changes what they see without a compile, and without a
// model (nil) neither is there.
func TestModelInRules(t *testing.T) {
	dir := platformPolicy(t, `package egressguard.rules.model

deny contains {"code": "PLT400", "message": msg, "field": "spec.host"} if {
	gw := data.inventory.objects.Gateway["istio-system/egress-gateway"]
	some dr in data.inventory.byHost.DestinationRule["istio-egressgateway.istio-system.svc.cluster.local"]
	secret := data.inventory.objects.Secret["istio-system/test.client"]
	msg := sprintf("%s %s %v", [gw.spec.servers[0].port.protocol, dr.metadata.name, secret.keys])
}

deny contains {"code": "PLT401", "message": "no model", "field": "spec.host"} if {
	not data.inventory.objects
}
`)
	model := &Model{Kinds: []*ModelKind{
		{Kind: "Gateway", Objects: []*ModelObject{modelObject(t, "Gateway", `{"metadata":{"name":"egress-gateway","namespace":"istio-system"},"spec":{"servers":[{"port":{"number":80,"protocol":"HTTPS"}}]}}`)}},
		{Kind: "DestinationRule", Objects: []*ModelObject{modelObject(t, "DestinationRule", `{"metadata":{"name":"egressgateway-for-test","namespace":"istio-system"},"spec":{"host":"istio-egressgateway"}}`)}},
		{Kind: "Secret", Objects: []*ModelObject{modelObject(t, "Secret", `{"metadata":{"name":"test.client","namespace":"istio-system"},"data":{"tls.crt":"eA==","tls.key":"eQ=="}}`)}},
	}}
	for _, ev := range Evaluators {
		t.Run(ev, func(t *testing.T) {
			e, err := New(t.Context(), Options{Config: testConfig(t), PolicyDirs: []string{dir}, Evaluator: ev, Inventory: Inventory{Model: model}})
			if err != nil {
				t.Fatal(err)
			}
			if len(e.Fallbacks()) > 0 {
				t.Fatalf("fallbacks: %v", e.Fallbacks())
			}
			got, err := messages(t.Context(), t, e, plainDR)
			if err != nil || !slices.Equal(got, []string{`HTTPS egressgateway-for-test ["tls.crt", "tls.key"]`}) {
				t.Fatalf("with the model: %q, %v", got, err)
			}
			without := &Model{Kinds: []*ModelKind{model.Kinds[0], model.Kinds[1]}}
			e2, err := e.WithInventory(Inventory{Model: without})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := messages(t.Context(), t, e2, plainDR); err != nil || len(got) != 0 {
				t.Fatalf("without the Secret: %q, %v", got, err)
			}
			e3, err := e2.WithInventory(Inventory{})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := messages(t.Context(), t, e3, plainDR); err != nil || !slices.Equal(got, []string{"no model"}) {
				t.Fatalf("no model: %q, %v", got, err)
			}
		})
	}
}

// A partial model (files) holds the kinds given alone: a kind none of the
// files has is unknown to the rules, not empty; a cluster's has them all.
func TestPartialModel(t *testing.T) {
	gw := &ModelKind{Kind: "Gateway", Objects: []*ModelObject{modelObject(t, "Gateway", `{"metadata":{"name":"g","namespace":"istio-system"}}`)}}
	partial := buildModel(nil, &Model{Kinds: []*ModelKind{gw}, Partial: true}, "cluster.local")
	if got := vm.ToAST(partial.objects).String(); got != `{"Gateway": {"istio-system/g": {"metadata": {"name": "g", "namespace": "istio-system"}}}}` {
		t.Errorf("partial: %s", got)
	}
	if got := vm.ToAST(partial.byHost).String(); got != `{}` {
		t.Errorf("partial byHost: %s", got)
	}
	whole := buildModel(nil, &Model{Kinds: []*ModelKind{gw}}, "cluster.local")
	if n := whole.objects.Len(); n != len(config.ModelKinds) {
		t.Errorf("a cluster's model has %d kinds, want %d", n, len(config.ModelKinds))
	}
}
