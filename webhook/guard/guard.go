// Package guard is the decision pipeline shared by the admission handlers,
// the offline check and the audit: decode the typed Istio object once,
// evaluate the policies, apply the mutation intents, diff, validate the
// result, and say in one Outcome everything decided about the object. The
// callers only render the Outcome.
package guard

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

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
	Intents(context.Context, *engine.Prepared) ([]mutators.Intent, error)
	Violations(context.Context, *engine.Prepared) ([]engine.Violation, error)
}

var _ Engine = (*engine.Engine)(nil)

// Phase is a step of admission, as the API server runs them: the mutating
// webhooks, then the validating ones on the mutated object.
type Phase uint8

// The phases.
const (
	Mutating Phase = 1 << iota
	Validating
	// Both phases, one after the other: the offline check and the audit.
	Both = Mutating | Validating
)

// Options tune a review.
type Options struct {
	// Phases are the steps the review runs (0: Both).
	Phases Phase
	// Strict rejects fields the Istio types do not have. The API server prunes
	// them before admission; files read by the CLI are not pruned.
	Strict bool
	// Enforce applies every intent, the dry-run ones too, and validates the
	// result: what enforcing every rule would make of the object (the
	// audit). Actions stay as configured.
	Enforce bool
	// MaxObjectBytes bounds the object evaluated (0: no bound); a larger
	// one is an InputError.
	MaxObjectBytes int
	// Mutate applies intents to a typed object (nil: mutators.Apply).
	Mutate func(client.Object, []mutators.Intent) error
}

// Skip reports why a request is admitted without evaluation, or "".
func Skip(cfg *config.Config, group, kind, namespace string) string {
	if _, ok := cfg.Policed(group, kind); !ok {
		return "kind not policed"
	}
	if slices.Contains(cfg.ExemptNamespaces, namespace) {
		return "namespace exempt"
	}
	return ""
}

// InputError is a request whose object cannot be evaluated: it does not
// decode into its Istio type (the message names the field), it is too large,
// or there is none.
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

// Review runs the phases of opts on req and returns what they decided.
//
// The mutating phase decodes the object into its Istio type only when there
// is something to apply (a malformed object without intents is left to the
// validating phase), once: a copy is made where the applied and the would-be
// object differ. The validating phase evaluates the object as the mutating
// phase left it.
//
// A DELETE is reviewed by the validating phase alone, on the object deleted
// (oldObject; input.object is null, as in the AdmissionReview): there is
// nothing to mutate, and the deleted object is not decoded into its type, so
// that an object stored before a rule existed can always be deleted unless a
// rule says otherwise.
//
// An object that cannot be evaluated is an *InputError; a panic in a step is
// a *PanicError naming the step; other errors are the engine's. A panic
// outside the steps (the engine's Config) is the caller's to contain.
func Review(ctx context.Context, e Engine, req engine.Request, opts Options) (*Outcome, error) {
	if opts.Phases == 0 {
		opts.Phases = Both
	}
	r := &review{e: e, req: req, opts: opts, o: newOutcome(req)}
	if why := Skip(e.Config(), req.Group, req.Kind, req.Namespace); why != "" {
		r.o.Skipped = why
		r.o.Metrics.Decision = DecisionSkipped
		return r.o, nil
	}
	if req.Operation == OperationDelete {
		return r.deleted(ctx)
	}
	if n := len(req.Object); opts.MaxObjectBytes > 0 && n > opts.MaxObjectBytes {
		return nil, &InputError{ID: r.o.ID, Err: fmt.Errorf("the object is %d bytes, over the %d-byte limit", n, opts.MaxObjectBytes)}
	}
	if len(req.Object) == 0 {
		return nil, &InputError{ID: r.o.ID, Err: errors.New("the request carries no object")}
	}
	if opts.Phases&Mutating != 0 {
		if err := r.mutate(ctx); err != nil {
			return nil, err
		}
	}
	if opts.Phases&Validating != 0 {
		if err := r.validate(ctx); err != nil {
			return nil, err
		}
	}
	r.o.Metrics.Decision = r.o.decision()
	return r.o, nil
}

// OperationDelete is the operation of a deletion.
const OperationDelete = "DELETE"

// deleted reviews a deletion: the violations of the object deleted.
func (r *review) deleted(ctx context.Context) (*Outcome, error) {
	if n := len(r.req.OldObject); r.opts.MaxObjectBytes > 0 && n > r.opts.MaxObjectBytes {
		return nil, &InputError{ID: r.o.ID, Err: fmt.Errorf("the deleted object is %d bytes, over the %d-byte limit", n, r.opts.MaxObjectBytes)}
	}
	switch {
	case r.opts.Phases&Validating == 0:
		r.o.Skipped = "nothing to mutate in a deletion"
	case len(r.req.OldObject) == 0 || string(r.req.OldObject) == "null":
		// API servers send the object deleted (oldObject) since
		// Kubernetes 1.15; without it there is nothing to judge.
		r.o.Skipped = "the deletion carries no oldObject"
	}
	if r.o.Skipped != "" {
		r.o.Metrics.Decision = DecisionSkipped
		return r.o, nil
	}
	if err := r.prepare(); err != nil {
		return nil, err
	}
	vs, err := step(StepEvaluate, func() ([]engine.Violation, error) { return r.e.Violations(ctx, r.input) })
	if err != nil {
		return nil, err
	}
	r.o.validated(r.req.Kind, vs)
	r.o.Metrics.Decision = r.o.decision()
	return r.o, nil
}

// review is the work on one object.
type review struct {
	e    Engine
	req  engine.Request
	opts Options
	o    *Outcome
	// input is the policy input of req.Object, once built.
	input *engine.Prepared
	// decoded: the mutating phase decoded req.Object into its Istio type.
	decoded bool
}

func (r *review) prepare() error {
	if r.input != nil {
		return nil
	}
	input, err := step(StepInput, func() (*engine.Prepared, error) { return r.e.Input(r.req) })
	if err != nil {
		return inputError(r.o.ID, err)
	}
	r.input = input
	return nil
}

// mutate evaluates the intents and applies them: the deny and warn ones to
// the object, every one to the would-be object.
func (r *review) mutate(ctx context.Context) error {
	if err := r.prepare(); err != nil {
		return err
	}
	intents, err := step(StepEvaluate, func() ([]mutators.Intent, error) { return r.e.Intents(ctx, r.input) })
	if err != nil {
		return err
	}
	if len(intents) == 0 {
		return nil
	}
	if !object.Typed(r.req.Group, r.req.Kind) {
		return fmt.Errorf("%s: the policies ask for %d mutations of a %s, which egress-guard does not mutate (first: %s)", r.o.ID, len(intents), r.req.Kind, intents[0].Type)
	}
	var applied, recorded []mutators.Intent
	for _, in := range intents {
		if in.Applied() || r.opts.Enforce {
			applied = append(applied, in)
		} else {
			recorded = append(recorded, in)
		}
	}
	original, mutated, wouldBe, err := r.apply(intents, applied, recorded)
	if err != nil {
		return err
	}
	if r.o.Patch, err = diff(original, mutated); err != nil {
		return err
	}
	if r.o.WouldBePatch, err = diff(mutated, wouldBe); err != nil {
		return err
	}
	r.o.mutated(r.req.Kind, intents, applied, recorded)
	if r.opts.Phases&Validating == 0 {
		// The mutating webhook answers with the patches alone.
		return nil
	}
	if r.o.Object, err = patch(r.o.ID, r.req.Object, r.o.Patch); err != nil {
		return err
	}
	r.o.WouldBe, err = patch(r.o.ID, r.o.Object, r.o.WouldBePatch)
	return err
}

// patch applies ops to the JSON document doc, as the API server does.
func patch(id string, doc []byte, ops []jsonpatch.Operation) ([]byte, error) {
	if len(ops) == 0 {
		return doc, nil
	}
	out, err := step(StepDiff, func() ([]byte, error) { return ApplyPatch(doc, ops) })
	if err != nil {
		return nil, fmt.Errorf("%s: applying the patch: %w", id, err)
	}
	return out, nil
}

// apply decodes the object once and applies the intents. It returns the
// spec before, after the applied intents and after every intent, as
// {"spec": ...} in Istio's JSON shape.
func (r *review) apply(all, applied, recorded []mutators.Intent) (original, mutated, wouldBe []byte, err error) {
	obj, err := step(StepDecode, func() (client.Object, error) {
		obj, err := object.Decode(r.req.Kind, r.req.Object, r.opts.Strict)
		if err != nil {
			return nil, &InputError{ID: r.o.ID, Err: err}
		}
		obj.SetNamespace(r.req.Namespace)
		obj.SetName(r.req.Name)
		return obj, nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	r.decoded = true
	if original, err = step(StepDecode, func() ([]byte, error) { return object.MarshalSpec(obj) }); err != nil {
		return nil, nil, nil, err
	}
	mutate := r.opts.Mutate
	if mutate == nil {
		mutate = mutators.Apply
	}
	// change applies intents to obj in place and writes it out.
	change := func(obj client.Object, intents []mutators.Intent) ([]byte, error) {
		return step(StepMutate, func() ([]byte, error) {
			if err := mutate(obj, intents); err != nil {
				return nil, fmt.Errorf("%s: %w", r.o.ID, err)
			}
			return object.MarshalSpec(obj)
		})
	}
	mutated, wouldBe = original, original
	if len(applied) > 0 {
		target := obj
		if len(recorded) > 0 {
			// obj is wanted again for the would-be object.
			target = obj.DeepCopyObject().(client.Object)
		}
		if mutated, err = change(target, applied); err != nil {
			return nil, nil, nil, err
		}
		wouldBe = mutated
	}
	if len(recorded) > 0 {
		// Every intent at once on the object as submitted: each names the
		// part it changes by its place there.
		if wouldBe, err = change(obj, all); err != nil {
			return nil, nil, nil, err
		}
	}
	return original, mutated, wouldBe, nil
}

// validate evaluates the violations of the object as the mutating phase left
// it, and decides.
func (r *review) validate(ctx context.Context) error {
	if len(r.o.Patch) > 0 {
		r.req.Object, r.input = r.o.Object, nil
	}
	// The mutating phase's decode is the check (strict: metadata too);
	// what its mutators changed they wrote from the typed object. A
	// workload is checked against its type in files only; another kind
	// without a type is read as its JSON alone.
	if !r.decoded {
		if _, err := step(StepDecode, func() (struct{}, error) {
			return struct{}{}, object.Check(r.req.Group, r.req.Kind, r.req.Object, r.opts.Strict)
		}); err != nil {
			return inputError(r.o.ID, err)
		}
	}
	if err := r.prepare(); err != nil {
		return err
	}
	vs, err := step(StepEvaluate, func() ([]engine.Violation, error) { return r.e.Violations(ctx, r.input) })
	if err != nil {
		return err
	}
	r.o.validated(r.req.Kind, vs)
	return nil
}
