package check_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

const scenario = "../../test/scenarios/000-http-mtls-origination"

// failing is the engine of a scenario whose input conversion panics for the
// objects named in panicOn.
type failing struct {
	*engine.Engine
	panicOn string
}

func (f failing) Input(r engine.Request) (*engine.Prepared, error) {
	if r.Name == f.panicOn {
		var m map[string]bool
		m[r.Name] = true
	}
	return f.Engine.Input(r)
}

// A panic in the work on one object is that object's error; the others are
// checked on, and nothing prints a stack.
func TestPanicIsTheObjectsError(t *testing.T) {
	cfg, err := config.LoadFile(filepath.Join(scenario, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(context.Background(), engine.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := check.ReadPaths([]string{filepath.Join(scenario, "mutate.yaml"), filepath.Join(scenario, "rejected.yaml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := check.Run(context.Background(), e, docs)
	if err != nil {
		t.Fatal(err)
	}
	bad := docs[0]
	got, err := check.Run(context.Background(), failing{e, bad.Name}, docs)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(got.Results) != len(docs) || got.Errors() != 1 {
		t.Fatalf("%d results, %d errors; want %d results, one error", len(got.Results), got.Errors(), len(docs))
	}
	r := got.Results[0]
	wantErr := bad.GVK.Kind + " " + bad.Namespace + "/" + bad.Name + ": internal error: assignment to entry in nil map"
	if r.Error != wantErr || r.Allowed || r.Source != bad.Source || strings.Contains(r.Error, "goroutine") {
		t.Errorf("the panicking object: error %q, allowed %v; want %q, not allowed", r.Error, r.Allowed, wantErr)
	}
	for i := 1; i < len(docs); i++ {
		if g, w := got.Results[i], want.Results[i]; g.Error != "" || g.Allowed != w.Allowed || g.Mutated != w.Mutated || len(g.Violations) != len(w.Violations) {
			t.Errorf("%s: %+v, want %+v", docs[i].Source, g, w)
		}
	}
	if got.Denied() != want.Denied() {
		t.Errorf("Denied %v, want %v: an error is no denial", got.Denied(), want.Denied())
	}
}
