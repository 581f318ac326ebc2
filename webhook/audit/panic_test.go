package audit

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// evaluationPanics is an engine whose evaluation of the violations panics
// for the objects of namespace "panics".
type evaluationPanics struct {
	*engine.Engine
}

func (e *evaluationPanics) Violations(ctx context.Context, in *engine.Prepared) ([]engine.Violation, error) {
	if in.Namespace == "panics" {
		panic("evaluation")
	}
	return e.Engine.Violations(ctx, in)
}

// A panic in the evaluation of one object is an error result for it; the
// other objects are audited on.
func TestPanicIsAnErrorResult(t *testing.T) {
	dir := scenarioDirs(t)[0]
	docs := readDocs(t, dir)
	e := loadConfig(t, filepath.Join(dir, "config.yaml"), nil)
	want, err := Run(context.Background(), e, docs, Options{Strict: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for bad < len(docs) && want.Results[bad].Skipped != "" {
		bad++
	}
	docs[bad].Namespace = "panics"
	got, err := Run(context.Background(), &evaluationPanics{Engine: e}, docs, Options{Strict: true, Workers: 2})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	d := docs[bad]
	if r := got.Results[bad]; r.Error != d.GVK.Kind+" panics/"+d.Name+": internal error: evaluation" || len(r.Findings) != 0 || r.Compliant() {
		t.Errorf("the panicking object: %+v", r)
	}
	for i := range docs {
		if i == bad {
			continue
		}
		if g, w := got.Results[i], want.Results[i]; g.Error != "" || len(g.Findings) != len(w.Findings) || g.Skipped != w.Skipped {
			t.Errorf("%s: %+v, want %+v", docs[i].Source, g, w)
		}
	}
	if s := Summarize(got); s.Errors != 1 {
		t.Errorf("summary: %d errors, want 1", s.Errors)
	}
}
