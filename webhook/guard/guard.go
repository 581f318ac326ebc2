// Package guard is the decision pipeline shared by the admission handlers and
// the offline CLI: decode the typed Istio object, evaluate the policies,
// apply mutation intents, diff, and turn violations into a decision.
package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egress-guard/egress-guard/mutators"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/object"
)

// Engine is what the pipeline needs of the policy engine. *engine.Engine is
// the one in use; the handlers and the CLI take any Engine, so that a caller
// can put a wrapper in front of it (one that counts, or one that fails).
type Engine interface {
	Config() *config.Config
	// Input converts a request into the policy input.
	Input(engine.Request) (*engine.Prepared, error)
	// Intents and Violations evaluate the policies; they stop when ctx ends.
	Intents(context.Context, *engine.Prepared) ([]engine.Intent, error)
	Violations(context.Context, *engine.Prepared) ([]engine.Violation, error)
}

var _ Engine = (*engine.Engine)(nil)

// Options tune decoding.
type Options struct {
	// Strict rejects fields the Istio types do not have. The API server prunes
	// them before admission; files read by the CLI are not pruned.
	Strict bool
	// Mutate applies intents to a typed object (nil: mutators.Apply).
	Mutate func(client.Object, []engine.Intent) error
}

// Skip reports why a request is admitted without evaluation, or "".
func Skip(cfg *config.Config, group, kind, namespace string) string {
	if !object.Known(group, kind) {
		return "kind not handled"
	}
	if slices.Contains(cfg.ExemptNamespaces, namespace) {
		return "namespace exempt"
	}
	return ""
}

// MutateResult is the outcome of the mutating step.
type MutateResult struct {
	// Intents are every mutation the policies ask for, each with its action.
	Intents []engine.Intent
	// Original is the object's spec as {"spec": ...} in Istio's JSON shape
	// (what the mutators change; a diff of two patches the whole object);
	// Mutated is the spec after the intents whose action is deny or warn;
	// WouldBe is the spec after every intent, dry runs included. They are
	// equal when nothing changes.
	Original []byte
	Mutated  []byte
	WouldBe  []byte
	// Input is the policy input of the object as submitted.
	Input *engine.Prepared
}

// Applied are the intents applied to the object (deny and warn actions).
func (r *MutateResult) Applied() []engine.Intent {
	return slices.DeleteFunc(slices.Clone(r.Intents), func(in engine.Intent) bool { return in.Action == config.ActionDryRun })
}

// Recorded are the dry-run intents: recorded, not applied.
func (r *MutateResult) Recorded() []engine.Intent {
	return slices.DeleteFunc(slices.Clone(r.Intents), func(in engine.Intent) bool { return in.Action != config.ActionDryRun })
}

// InputError is a request whose object cannot be decoded into its Istio type.
type InputError struct {
	ID  string
	Err error
}

func (e *InputError) Error() string { return fmt.Sprintf("%s: %v", e.ID, e.Err) }

// The steps of the pipeline, as PanicError.Where names them.
const (
	StepDecode   = "decode"
	StepInput    = "input"
	StepEvaluate = "evaluate"
	StepMutate   = "mutate"
	StepDiff     = "diff"
)

// PanicError is a panic in the work for one object, recovered: that object
// gets an error, and the caller goes on with the others.
type PanicError struct {
	// Where names the step that panicked (Step*, or the caller's own name
	// for its part of the work).
	Where string
	Value any
	// Stack is the panicking goroutine's stack, for the log.
	Stack []byte
}

// Error does not include the stack: it is the message a user sees.
func (e *PanicError) Error() string { return fmt.Sprintf("internal error: %v", e.Value) }

// Contain turns a panic of the function that defers it into a *PanicError in
// *err, tagged with where:
//
//	defer guard.Contain("handler", &err)
func Contain(where string, err *error) {
	if v := recover(); v != nil {
		*err = &PanicError{Where: where, Value: v, Stack: debug.Stack()}
	}
}

// step runs one step of the pipeline, with a panic contained.
func step[T any](where string, f func() (T, error)) (v T, err error) {
	defer Contain(where, &err)
	return f()
}

// inputError wraps a decoding error of the object as an InputError; a
// contained panic stays a PanicError.
func inputError(id string, err error) error {
	if err == nil {
		return nil
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		return err
	}
	return &InputError{ID: id, Err: err}
}

// Mutate evaluates the intents for req and applies them to the typed object.
//
// The object is decoded into its Istio type only when there is something to
// apply; a malformed object without intents is left to the validating step.
// A panic in any step is returned as a *PanicError.
func Mutate(ctx context.Context, e Engine, req engine.Request, opts Options) (*MutateResult, error) {
	id := object.ID(req.Kind, req.Namespace, req.Name)
	input, err := step(StepInput, func() (*engine.Prepared, error) { return e.Input(req) })
	if err != nil {
		return nil, inputError(id, err)
	}
	intents, err := step(StepEvaluate, func() ([]engine.Intent, error) { return e.Intents(ctx, input) })
	if err != nil {
		return nil, err
	}
	res := &MutateResult{Intents: intents, Input: input}
	if len(intents) == 0 {
		return res, nil
	}
	applied, recorded := res.Applied(), res.Recorded()
	switch {
	case len(recorded) == 0:
		res.Original, res.Mutated, err = apply(req, applied, opts)
		res.WouldBe = res.Mutated
	case len(applied) == 0:
		res.Original, res.WouldBe, err = apply(req, recorded, opts)
		res.Mutated = res.Original
	default:
		if res.Original, res.Mutated, err = apply(req, applied, opts); err == nil {
			_, res.WouldBe, err = apply(req, intents, opts)
		}
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// apply decodes the spec of req's object and applies intents to it. It
// returns the spec before and after, as {"spec": ...} in Istio's JSON shape.
func apply(req engine.Request, intents []engine.Intent, opts Options) (before, after []byte, err error) {
	id := object.ID(req.Kind, req.Namespace, req.Name)
	obj, err := step(StepDecode, func() (client.Object, error) {
		obj, err := object.DecodeSpec(req.Kind, req.Object, opts.Strict)
		if err != nil {
			return nil, &InputError{ID: id, Err: err}
		}
		obj.SetNamespace(req.Namespace)
		obj.SetName(req.Name)
		return obj, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if before, err = step(StepDecode, func() ([]byte, error) { return object.MarshalSpec(obj) }); err != nil {
		return nil, nil, err
	}
	if len(intents) == 0 {
		return before, before, nil
	}
	mutate := opts.Mutate
	if mutate == nil {
		mutate = mutators.Apply
	}
	after, err = step(StepMutate, func() ([]byte, error) {
		if err := mutate(obj, intents); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		return object.MarshalSpec(obj)
	})
	if err != nil {
		return nil, nil, err
	}
	return before, after, nil
}

// Decision is the outcome of the validating step.
type Decision struct {
	Violations []engine.Violation
	// Allowed is false when any violation's action is deny.
	Allowed bool
	// Message explains a denial: the object and each denying violation.
	Message string
	// Warnings are the warn-action violations, for the user.
	Warnings []string
	// Recorded are the dryrun-action violations: admitted, only recorded.
	Recorded []engine.Violation
}

// Validate evaluates the violations for req. A panic in any step is returned
// as a *PanicError.
func Validate(ctx context.Context, e Engine, req engine.Request, opts Options) (*Decision, error) {
	return ValidateInput(ctx, e, req, nil, opts)
}

// ValidateInput is Validate with the policy input of req already built
// (nil: built here), e.g. by Mutate when it changed nothing.
func ValidateInput(ctx context.Context, e Engine, req engine.Request, input *engine.Prepared, opts Options) (*Decision, error) {
	id := object.ID(req.Kind, req.Namespace, req.Name)
	if _, err := step(StepDecode, func() (struct{}, error) { return struct{}{}, object.Check(req.Kind, req.Object, opts.Strict) }); err != nil {
		return nil, inputError(id, err)
	}
	if input == nil {
		var err error
		if input, err = step(StepInput, func() (*engine.Prepared, error) { return e.Input(req) }); err != nil {
			return nil, inputError(id, err)
		}
	}
	vs, err := step(StepEvaluate, func() ([]engine.Violation, error) { return e.Violations(ctx, input) })
	if err != nil {
		return nil, err
	}
	return Decide(id, vs), nil
}

// Decide turns violations into a decision.
func Decide(id string, vs []engine.Violation) *Decision {
	d := &Decision{Violations: vs, Allowed: true}
	var denied []string
	for _, v := range vs {
		line := v.Code + ": " + v.Message
		switch v.Action {
		case config.ActionDeny:
			denied = append(denied, line)
		case config.ActionWarn:
			d.Warnings = append(d.Warnings, "egress-guard "+id+": "+line)
		default:
			d.Recorded = append(d.Recorded, v)
		}
	}
	if len(denied) > 0 {
		d.Allowed = false
		d.Message = "egress-guard denied " + id + ": " + strings.Join(denied, "; ")
	}
	return d
}

// Describe summarises a patch for people: one line per operation.
func Describe(patch []jsonpatch.Operation) []string {
	out := make([]string, 0, len(patch))
	for _, op := range patch {
		if op.Operation == "remove" {
			out = append(out, fmt.Sprintf("%s %s", op.Operation, op.Path))
			continue
		}
		v, _ := json.Marshal(op.Value)
		out = append(out, fmt.Sprintf("%s %s %s", op.Operation, op.Path, v))
	}
	return out
}

// Diff is the RFC 6902 patch applied: from the original to the mutated object.
func (r *MutateResult) Diff() ([]jsonpatch.Operation, error) {
	return diff(r.Original, r.Mutated)
}

// RecordedDiff is the would-be patch of the dry-run intents, not applied:
// from the mutated object to the one every intent would give.
func (r *MutateResult) RecordedDiff() ([]jsonpatch.Operation, error) {
	return diff(r.Mutated, r.WouldBe)
}

func diff(from, to []byte) (_ []jsonpatch.Operation, err error) {
	defer Contain(StepDiff, &err)
	if from == nil || bytes.Equal(from, to) {
		return nil, nil
	}
	ops, err := jsonpatch.CreatePatch(from, to)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(ops, func(a, b jsonpatch.Operation) int { return strings.Compare(a.Path, b.Path) })
	return ops, nil
}
