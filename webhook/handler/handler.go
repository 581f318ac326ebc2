// Package handler holds the admission handlers: convert the request, review
// it with the guard pipeline, render the outcome as the response (and as
// metrics, log entries and Events). The handlers decide nothing themselves.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/metrics"
	"github.com/egress-guard/egress-guard/webhook/object"
)

// DefaultMaxObjectBytes is the largest object evaluated: etcd's default limit.
const DefaultMaxObjectBytes = 1572864

// DefaultEvaluationTimeout bounds the work on one request when
// Deps.EvaluationTimeout is not set.
const DefaultEvaluationTimeout = 8 * time.Second

// WhereHandler labels a panic in the handlers' own part of a request's work
// (egress_guard_panics_total); the pipeline's steps have guard's names.
const WhereHandler = "handler"

// Deps are what the handlers need.
type Deps struct {
	// Engine returns the engine in force (swapped on reload).
	Engine  func() guard.Engine
	Metrics *metrics.Metrics
	Log     logr.Logger
	// MaxObjectBytes bounds the object evaluated (0: DefaultMaxObjectBytes).
	MaxObjectBytes int
	// EvaluationTimeout bounds the work on one request (0:
	// DefaultEvaluationTimeout); a deadline of the request's context that
	// comes sooner applies.
	EvaluationTimeout time.Duration
	// Limit bounds the requests evaluated at once (nil: no bound).
	Limit *Limit
	// Recorder records Events on objects for warn and dryrun decisions
	// (nil: none).
	Recorder record.EventRecorder
}

// Mutating is the mutating webhook.
type Mutating struct{ Deps }

// Validating is the validating webhook.
type Validating struct{ Deps }

var _ admission.Handler = (*Mutating)(nil)
var _ admission.Handler = (*Validating)(nil)

// Handle answers a mutating admission request.
func (h *Mutating) Handle(ctx context.Context, req admission.Request) admission.Response {
	return h.observe(ctx, "mutate", req, func(ctx context.Context, req admission.Request) (admission.Response, string) {
		return h.review(ctx, req, guard.Mutating)
	})
}

// Handle answers a validating admission request.
func (h *Validating) Handle(ctx context.Context, req admission.Request) admission.Response {
	return h.observe(ctx, "validate", req, func(ctx context.Context, req admission.Request) (admission.Response, string) {
		return h.review(ctx, req, guard.Validating)
	})
}

// review runs one phase of the pipeline on req and renders its outcome.
func (d *Deps) review(ctx context.Context, req admission.Request, phase guard.Phase) (admission.Response, string) {
	in, resp, decision := d.prepare(req)
	if decision != "" {
		return resp, decision
	}
	limit := d.MaxObjectBytes
	if limit <= 0 {
		limit = DefaultMaxObjectBytes
	}
	o, err := guard.Review(ctx, d.Engine(), in, guard.Options{Phases: phase, MaxObjectBytes: limit})
	if err != nil {
		return d.fail(ctx, in, err)
	}
	d.record(req, in, o)
	return respond(in, o), o.Metrics.Decision
}

// respond renders an outcome with controller-runtime's response
// constructors. A denial carries, beside its one-line message, each denying
// violation as a cause (field and message) in the status details, as the API
// server reports field errors; its reason stays Forbidden, so that kubectl
// prints the message, which names the webhook.
func respond(in engine.Request, o *guard.Outcome) admission.Response {
	var resp admission.Response
	switch {
	case o.Skipped != "":
		return admission.Allowed(o.Skipped)
	case !o.Allowed:
		resp = admission.Denied(o.Message)
		if len(o.Causes) > 0 {
			resp.Result.Details = &metav1.StatusDetails{Group: in.Group, Kind: in.Kind, Name: in.Name, Causes: o.Causes}
		}
		return resp.WithWarnings(o.Warnings...)
	case len(o.Patch) > 0:
		resp = admission.Patched("", o.Patch...)
	default:
		resp = admission.Allowed("")
	}
	resp = resp.WithWarnings(o.Warnings...)
	resp.AuditAnnotations = o.AuditAnnotations
	return resp
}

// record counts the outcome, logs it and records its Events.
func (d *Deps) record(req admission.Request, in engine.Request, o *guard.Outcome) {
	for _, m := range o.Metrics.Mutations {
		d.Metrics.Mutation(m.Kind, m.Intent, m.Code, m.Action)
	}
	for _, v := range o.Metrics.Violations {
		d.Metrics.Violation(v.Kind, v.Code, v.Action)
	}
	switch {
	case !o.Allowed:
		d.Log.V(1).Info("denied", "object", o.ID, "message", o.Message)
	case len(o.Patch) > 0:
		d.Log.V(1).Info("patched", "object", o.ID, "operations", len(o.Patch))
	}
	for _, e := range o.Events {
		kv := append([]any{"object", o.ID}, e.Log...)
		d.Log.Info(logMessages[e.Reason], append(kv, "dryRun", in.DryRun)...)
		d.event(req, in, e.Reason, e.Message)
	}
}

// logMessages are the log entries of the Event reasons.
var logMessages = map[string]string{
	guard.ReasonWarning:    "warned",
	guard.ReasonWouldDeny:  "dry run: would deny",
	guard.ReasonWouldPatch: "dry run: would patch",
}

// observe runs a decision within the request's deadline and the limit of
// requests evaluated at once, times it and counts it. Whatever goes wrong on
// the way is an answer for this request alone: a panic is an internal error,
// a request beyond the limit an overload (code 429, which the server in front
// answers with that HTTP status), an evaluation past its deadline an error.
func (d *Deps) observe(ctx context.Context, webhook string, req admission.Request, decide func(context.Context, admission.Request) (admission.Response, string)) admission.Response {
	if req.UID == "" {
		// No request to answer: the review had none, or no uid.
		return admission.Errored(http.StatusBadRequest, errors.New("malformed AdmissionReview: no request or an empty request.uid"))
	}
	start := time.Now()
	timeout := d.EvaluationTimeout
	if timeout <= 0 {
		timeout = DefaultEvaluationTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var resp admission.Response
	var decision string
	kind := d.kindLabel(req.Kind.Group, req.Kind.Kind)
	if err := d.Limit.Do(func() { resp, decision = decide(ctx, req) }); err != nil {
		resp, decision = d.failed(req, err)
	}
	d.Metrics.Request(webhook, kind, operationLabel(req.Operation), decision, time.Since(start))
	return resp
}

// kindLabel is the request's kind as a metric label: a policed kind, or
// "other" (the client names the kind; a label per made-up kind would grow
// without bound). A panic reading the configuration leaves "other": the
// decision reads it too, and reports the panic.
func (d *Deps) kindLabel(group, kind string) (label string) {
	label = "other"
	defer func() { _ = recover() }()
	if _, ok := d.Engine().Config().Policed(group, kind); ok {
		label = kind
	}
	return label
}

// operationLabel is the operation as a metric label: one of the four, or
// "unknown" (a label per made-up operation would grow without bound).
func operationLabel(op admissionv1.Operation) string {
	switch op {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		return string(op)
	}
	return "unknown"
}

// failed answers a request whose decision did not give an answer: it was
// beyond the limit (a *BusyError), or it panicked (a *guard.PanicError).
func (d *Deps) failed(req admission.Request, err error) (admission.Response, string) {
	id := requestID(req)
	var busy *BusyError
	if errors.As(err, &busy) {
		d.Log.Info("overloaded: request refused", "object", id, "limit", busy.Limit)
		return admission.Errored(http.StatusTooManyRequests, fmt.Errorf("egress-guard: %s: %w", id, err)), "overloaded"
	}
	var pe *guard.PanicError
	if errors.As(err, &pe) {
		return d.panicked(id, pe)
	}
	d.Log.Error(err, "no decision", "object", id)
	return admission.Errored(http.StatusInternalServerError, fmt.Errorf("egress-guard: %s: %w", id, err)), "error"
}

// timedOut answers a request whose evaluation did not end before the
// request's context did.
func (d *Deps) timedOut(id string, err error) (admission.Response, string) {
	d.Log.Info("evaluation stopped: the request's deadline passed", "object", id, "error", err.Error())
	return admission.Errored(http.StatusInternalServerError, fmt.Errorf("egress-guard: %s: the evaluation did not finish before the request's deadline: %w", id, err)), "error"
}

// panicked answers a request whose work panicked, and logs the panic with
// its stack in one entry.
func (d *Deps) panicked(id string, pe *guard.PanicError) (admission.Response, string) {
	d.Metrics.Panic(pe.Where)
	d.Log.Error(pe, "panic while answering an admission request", "object", id, "where", pe.Where, "stack", string(pe.Stack))
	return admission.Errored(http.StatusInternalServerError, fmt.Errorf("egress-guard: %s: %w", id, pe)), "error"
}

// requestID names the object of req, as messages do.
func requestID(req admission.Request) string {
	name := req.Name
	if name == "" {
		name = generateName(req.Object.Raw)
	}
	return object.ID(req.Kind.Kind, req.Namespace, name)
}

// prepare converts the request, or answers it without evaluation: connects
// are allowed untouched; an unknown operation is an error. A deletion is
// reviewed on the object deleted (guard.Review).
func (d *Deps) prepare(req admission.Request) (engine.Request, admission.Response, string) {
	in := engine.Request{
		Operation: string(req.Operation),
		Group:     req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind,
		Namespace: req.Namespace, Name: req.Name,
		DryRun: req.DryRun != nil && *req.DryRun,
		Object: req.Object.Raw, OldObject: req.OldObject.Raw,
		// controller-runtime decoded the review with encoding/json, which
		// checks the whole body.
		Checked: true,
	}
	if in.Name == "" {
		in.Name = generateName(req.Object.Raw)
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete:
	case admissionv1.Connect:
		return in, admission.Allowed(""), guard.DecisionSkipped
	default:
		// Never admitted unevaluated: the server in front refuses these
		// reviews before they get here.
		return in, admission.Errored(http.StatusBadRequest, fmt.Errorf("egress-guard: %s: unknown operation %q (want CREATE, UPDATE, DELETE or CONNECT)", object.ID(in.Kind, in.Namespace, in.Name), req.Operation)), "error"
	}
	if req.UserInfo.Username != "" {
		in.UserInfo, _ = json.Marshal(req.UserInfo)
	}
	return in, admission.Response{}, ""
}

// fail answers a request the pipeline could not decide: an object that
// cannot be evaluated (malformed, too large, missing) is denied, a malformed
// one with the decoder's message naming the field; anything else is an
// error answer (not allowed, status code 500), which the API server takes
// as a refusal whatever the webhook's failurePolicy: a request is never
// admitted because its evaluation failed.
func (d *Deps) fail(ctx context.Context, in engine.Request, err error) (admission.Response, string) {
	id := object.ID(in.Kind, in.Namespace, in.Name)
	var ie *guard.InputError
	var pe *guard.PanicError
	switch {
	case errors.As(err, &pe):
		return d.panicked(id, pe)
	case errors.As(err, &ie):
		resp := admission.Denied("egress-guard denied " + ie.Error())
		if fe := (*object.FieldError)(nil); errors.As(ie.Err, &fe) {
			resp.Result.Details = &metav1.StatusDetails{Group: in.Group, Kind: in.Kind, Name: in.Name, Causes: []metav1.StatusCause{
				{Type: metav1.CauseTypeFieldValueInvalid, Field: fe.Field, Message: fe.Detail},
			}}
		}
		return resp, "denied"
	case ctx.Err() != nil:
		// The evaluators stop when the context ends, with an error of
		// their own.
		return d.timedOut(id, err)
	}
	d.Log.Error(err, "evaluation failed", "object", id)
	return admission.Errored(http.StatusInternalServerError, fmt.Errorf("egress-guard: %s: %w", id, err)), "error"
}

func generateName(raw []byte) string {
	var m struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &m)
	return m.Metadata.GenerateName
}
