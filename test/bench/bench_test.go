package main

import (
	"encoding/json"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

func TestGCPercentDefault(t *testing.T) {
	for _, c := range []struct {
		help string
		want int
		ok   bool
	}{
		{"      --gc-percent int     Go GC target percentage unless GOGC is set: a higher target trades memory for CPU (default 400)\n", 400, true},
		{"      --gc-percent int     Go GC target percentage\n      --port int   webhook server port (default 9443)\n", 0, false},
		{"      --port int   webhook server port (default 9443)\n", 0, false},
	} {
		got, ok := gcPercentDefault([]byte(c.help))
		if got != c.want || ok != c.ok {
			t.Errorf("gcPercentDefault(%q) = %d, %v; want %d, %v", c.help, got, ok, c.want, c.ok)
		}
	}
}

func TestParseMetric(t *testing.T) {
	data := []byte(`# HELP egress_guard_inventory_updates_total Engines rebuilt with a new inventory.
# TYPE egress_guard_inventory_updates_total counter
egress_guard_inventory_updates_total{result="failure"} 2
egress_guard_inventory_updates_total{result="success"} 40
egress_guard_inventory_service_entries 5000
egress_guard_inventory_service_entries_other 7
`)
	if m := parseMetric(data, "egress_guard_inventory_updates_total"); !m.found || m.v != 42 {
		t.Errorf("updates: %+v, want 42", m)
	}
	if m := parseMetric(data, "egress_guard_inventory_service_entries"); !m.found || m.v != 5000 {
		t.Errorf("service entries: %+v, want 5000", m)
	}
	if m := parseMetric(data, "egress_guard_policy_compiles_total"); m.found || m.String() != "n/a" {
		t.Errorf("absent metric: %+v (%s), want n/a", m, m)
	}
}

func TestOnly(t *testing.T) {
	rs, err := mix()
	if err != nil {
		t.Fatal(err)
	}
	pods, err := only(rs, "Pod")
	if err != nil || len(pods) != 2 || pods[0].name != "Pod injected" || pods[1].name != "Pod excluded" {
		t.Errorf("-only Pod: %v %v", pods, err)
	}
	if all, err := only(rs, ""); err != nil || len(all) != len(rs) {
		t.Errorf("-only \"\": %d of %d, %v", len(all), len(rs), err)
	}
	if _, err := only(rs, "Gateway"); err == nil {
		t.Error("-only of no review: no error")
	}
}

// The mix's reviews and the probe's: valid AdmissionReviews whose uid
// newBody rewrites, and verify reads answers back.
func TestReviews(t *testing.T) {
	rs, err := mix()
	if err != nil {
		t.Fatal(err)
	}
	probe := &review{name: "VS probe", path: "/validate", object: []byte("kind: VirtualService\nmetadata: {name: probe-001}\nspec:\n  hosts: [probe-001]\n")}
	if err := probe.build(); err != nil {
		t.Fatal(err)
	}
	for _, r := range append(rs, probe) {
		body, uid := r.newBody()
		var ar struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		if err := json.Unmarshal(body, &ar); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if ar.Request.UID != uid {
			t.Errorf("%s: uid %q, want %q", r.name, ar.Request.UID, uid)
		}
		answer := []byte(`{"response":{"uid":"` + uid + `","allowed":false,"status":{"code":403,"message":"denied"}}}`)
		if msg := verify(answer, uid, denied); msg != "" {
			t.Errorf("%s: %s", r.name, msg)
		}
		if msg := verify(answer, uid, allowed); msg == "" {
			t.Errorf("%s: a denial verified as allowed", r.name)
		}
	}
}

// The model's measurement runs on every kind's generated objects, which
// convert, and reports what it measured.
func TestModelBench(t *testing.T) {
	m, err := modelBench(t.Context(), 50, 16)
	if err != nil {
		t.Fatal(err)
	}
	if m.kinds != len(config.ModelKinds) || m.heap == 0 || len(m.swaps) != 16 || m.build <= 0 {
		t.Errorf("%+v", m)
	}
	for _, k := range config.ModelKinds {
		o, err := engine.NewModelObject(k.Kind, []byte(modelObjectJSON(k.Kind, 3, 0)))
		if err != nil || o.Name != "obj-00003" {
			t.Errorf("%s: %+v %v", k.Kind, o, err)
		}
	}
}
