package guard_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
)

// panicky is an engine whose chosen step panics; the others give one
// intent, so that the mutating step decodes and mutates.
type panicky struct{ step string }

func (p panicky) Config() *config.Config { return config.Default() }

func (p panicky) Input(r engine.Request) (*engine.Prepared, error) {
	if p.step == guard.StepInput {
		panic("input")
	}
	return engine.Input(r)
}

func (p panicky) Intents(context.Context, *engine.Prepared) ([]engine.Intent, error) {
	if p.step == guard.StepEvaluate {
		panic("intents")
	}
	return []engine.Intent{{Type: "originate_tls", Code: "EGR303", Action: config.ActionDeny, Port: 443, Mode: "MUTUAL"}}, nil
}

func (p panicky) Violations(context.Context, *engine.Prepared) ([]engine.Violation, error) {
	if p.step == guard.StepEvaluate {
		var vs []engine.Violation
		_ = vs[3]
	}
	return nil, nil
}

const destinationRule = `{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
 "metadata": {"name": "dr", "namespace": "default"}, "spec": {"host": "test.com"}}`

// A panic in any step of the pipeline is returned as a *PanicError naming
// the step, never as an input error (which would deny the object as
// malformed), and never escapes.
func TestPanicsAreErrors(t *testing.T) {
	req := engine.Request{Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule", Namespace: "default", Name: "dr", Object: []byte(destinationRule)}
	boom := func(client.Object, []engine.Intent) error { panic("mutator") }
	for _, tc := range []struct {
		name, step string
		opts       guard.Options
		validate   bool
		value      string
	}{
		{"input of the mutating step", guard.StepInput, guard.Options{}, false, "input"},
		{"evaluation of the intents", guard.StepEvaluate, guard.Options{}, false, "intents"},
		{"a mutator", guard.StepMutate, guard.Options{Mutate: boom}, false, "mutator"},
		{"input of the validating step", guard.StepInput, guard.Options{}, true, "input"},
		{"evaluation of the violations", guard.StepEvaluate, guard.Options{}, true, "index out of range [3] with length 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.validate {
				_, err = guard.Validate(context.Background(), panicky{tc.step}, req, tc.opts)
			} else {
				_, err = guard.Mutate(context.Background(), panicky{tc.step}, req, tc.opts)
			}
			var pe *guard.PanicError
			var ie *guard.InputError
			if !errors.As(err, &pe) || errors.As(err, &ie) {
				t.Fatalf("want a PanicError, got %#v", err)
			}
			if pe.Where != tc.step || !strings.Contains(err.Error(), "internal error: ") || !strings.Contains(err.Error(), tc.value) {
				t.Errorf("PanicError where %q, %q; want %q and the value %q", pe.Where, err, tc.step, tc.value)
			}
			if strings.Contains(err.Error(), "goroutine") || !strings.Contains(string(pe.Stack), "guard_test.go") {
				t.Errorf("the message must not carry the stack, the Stack must: %q\n%s", err, pe.Stack)
			}
		})
	}
	// The same engine without a panicking step mutates.
	m, err := guard.Mutate(context.Background(), panicky{}, req, guard.Options{})
	if err != nil || len(m.Applied()) != 1 {
		t.Fatalf("Mutate: %v", err)
	}
	if patch, err := m.Diff(); err != nil || len(patch) == 0 {
		t.Errorf("Diff: %v %v", patch, err)
	}
}
