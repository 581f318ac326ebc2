package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/test/harness"
)

// outcome is what became of one applied object.
type outcome int

const (
	accepted outcome = iota // stored as submitted
	mutated                 // stored changed
	rejected                // denied by an admission webhook
	failed                  // kubectl failed otherwise
)

func (o outcome) String() string {
	return [...]string{"ACCEPTED", "MUTATED", "REJECTED", "FAILED"}[o]
}

// objectResult is one object of a scenario file, applied.
type objectResult struct {
	doc      *harness.Doc
	expect   outcome
	got      outcome
	note     string   // why the webhook had no say, when it had none
	diff     string   // MUTATED: submitted .spec -> stored .spec
	message  string   // REJECTED, FAILED: kubectl's error
	warnings []string // kubectl's warnings
	problems []string // how the result differs from the expectation
}

// scenarioResult is one scenario, run.
type scenarioResult struct {
	name    string
	objects []*objectResult
	err     error // the scenario could not be run to the end
	took    time.Duration
}

// count returns how many objects ended as o.
func (r *scenarioResult) count(o outcome) int {
	n := 0
	for _, obj := range r.objects {
		if obj.got == o {
			n++
		}
	}
	return n
}

// problems returns the objects that did not behave as expected.
func (r *scenarioResult) problems() []*objectResult {
	var out []*objectResult
	for _, obj := range r.objects {
		if len(obj.problems) > 0 {
			out = append(out, obj)
		}
	}
	return out
}

// policedKinds are the kinds the webhook configurations send to egress-guard.
var policedKinds = []string{"ServiceEntry", "VirtualService", "DestinationRule"}

// apply applies one object with kubectl, as a user would, and works out
// what became of it.
func (d *demo) apply(ctx context.Context, s *harness.Scenario, doc *harness.Doc, expect outcome) *objectResult {
	o := &objectResult{doc: doc, expect: expect}
	switch {
	case !slices.Contains(policedKinds, doc.Obj.GetKind()):
		o.note = "kind not policed"
	case slices.Contains(s.Exempt, doc.Obj.GetNamespace()):
		o.note = "exempt namespace"
	}
	r := d.cp.Kubectl(ctx, doc.Raw, "apply", "-o", "json", "-f", "-")
	o.warnings = r.Warnings()
	if r.Err != nil {
		o.message = errorLines(r)
		o.got = failed
		if strings.Contains(r.Stderr, "denied the request") {
			o.got = rejected
		}
	} else {
		var stored map[string]any
		if err := json.Unmarshal([]byte(r.Stdout), &stored); err != nil {
			o.got = failed
			o.message = fmt.Sprintf("decoding the object kubectl printed: %v", err)
		} else {
			got := harness.Canonical(stored["spec"])
			o.got = accepted
			if !reflect.DeepEqual(got, doc.Spec()) {
				o.got = mutated
				o.diff = specDiff(doc.Spec(), got, "submitted .spec", "stored .spec")
			}
			if expect == mutated {
				o.problems = append(o.problems, checkExpected(s, doc, got)...)
			}
		}
	}
	if o.got != expect {
		o.problems = append([]string{fmt.Sprintf("expected %s, got %s", expect, o.got)}, o.problems...)
	}
	if expect == rejected && o.got == rejected {
		for _, code := range doc.ExpectCodes() {
			if !strings.Contains(o.message, code) {
				o.problems = append(o.problems, "the message lacks rule code "+code)
			}
		}
	}
	return o
}

// checkExpected compares a stored mutate.yaml object with its form in
// mutate-expected.yaml.
func checkExpected(s *harness.Scenario, doc *harness.Doc, stored any) []string {
	want := s.ExpectedFor(doc)
	if want == nil {
		return []string{"mutate-expected.yaml has no " + doc.Obj.GetKind() + " " + doc.Obj.GetName()}
	}
	if reflect.DeepEqual(want.Spec(), stored) {
		return nil
	}
	return []string{"stored .spec differs from mutate-expected.yaml:\n" +
		specDiff(want.Spec(), stored, "mutate-expected.yaml .spec", "stored .spec")}
}

// errorLines are kubectl's stderr without its warnings.
func errorLines(r harness.Result) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(r.Stderr), "\n") {
		if !strings.HasPrefix(line, "Warning: ") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return r.Err.Error()
	}
	return strings.Join(out, "\n")
}

// specDiff is a unified diff of two .spec values as YAML.
func specDiff(from, to any, fromName, toName string) string {
	a, errA := yaml.Marshal(from)
	b, errB := yaml.Marshal(to)
	if errA != nil || errB != nil {
		return fmt.Sprintf("(cannot show the difference: %v %v)", errA, errB)
	}
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        difflib.SplitLines(strings.TrimSuffix(string(a), "\n")),
		B:        difflib.SplitLines(strings.TrimSuffix(string(b), "\n")),
		FromFile: fromName,
		ToFile:   toName,
		Context:  2,
	})
	if err != nil {
		return fmt.Sprintf("(cannot show the difference: %v)", err)
	}
	return strings.TrimRight(diff, "\n")
}
