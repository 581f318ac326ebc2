// Package handler holds the admission handlers: decode, evaluate, respond.
// The decisions come from the guard pipeline; the handlers only translate.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/mutators"
	"github.com/egress-guard/egress-guard/webhook/config"
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
	// EvaluationTimeout bounds the work on one request, waiting for a worker
	// included (0: DefaultEvaluationTimeout); a deadline of the request's
	// context that comes sooner applies.
	EvaluationTimeout time.Duration
	// Workers run the evaluations (nil: on the request's goroutine).
	Workers *Workers
	// Recorder records Events on objects for warn and dryrun decisions
	// (nil: none).
	Recorder record.EventRecorder
}

// Mutator is the mutating webhook.
type Mutator struct{ Deps }

// Validator is the validating webhook.
type Validator struct{ Deps }

var _ admission.Handler = (*Mutator)(nil)
var _ admission.Handler = (*Validator)(nil)

// Handle answers a mutating admission request.
func (h *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return h.observe(ctx, "mutate", req, h.handle)
}

func (h *Mutator) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	e := h.Engine()
	in, resp, skip := h.prepare(req, e)
	if skip != "" {
		return resp, skip
	}
	m, err := guard.Mutate(ctx, e, in, guard.Options{})
	if err != nil {
		return h.fail(ctx, in, err)
	}
	if len(m.Intents) == 0 {
		return admission.Allowed(""), "allowed"
	}
	for _, intent := range m.Intents {
		h.Metrics.Mutation(in.Kind, intent.Type, intent.Code, string(intent.Action))
	}
	id := object.ID(in.Kind, in.Namespace, in.Name)
	recorded, err := m.RecordedDiff()
	if err != nil {
		return h.fail(ctx, in, err)
	}
	resp = admission.PatchResponseFromRaw(m.Original, m.Mutated)
	decision := "allowed"
	if len(resp.Patches) > 0 {
		decision = "patched"
		applied := m.Applied()
		warnings := make([]string, 0, len(applied))
		for _, intent := range applied {
			warnings = append(warnings, "egress-guard "+id+": "+mutators.Describe(intent))
		}
		resp = resp.WithWarnings(warnings...)
		h.Log.V(1).Info("patched", "object", id, "intents", len(applied))
		// A warn-action mutation is applied and, like a warn violation,
		// recorded: audit annotation, log line, Event.
		for _, intent := range applied {
			if intent.Action != config.ActionWarn {
				continue
			}
			if resp.AuditAnnotations == nil {
				resp.AuditAnnotations = map[string]string{}
			}
			resp.AuditAnnotations["warn."+strings.ToLower(intent.Code)+".intent"] = mutators.Describe(intent)
			h.Log.Info("warned", "object", id, "code", intent.Code, "action", intent.Action, "patched", mutators.Describe(intent), "dryRun", in.DryRun)
			h.event(req, in, ReasonWarning, fmt.Sprintf("%s (warn, patched): %s", intent.Code, mutators.Describe(intent)))
		}
	} else {
		// Nothing to apply: answer without an empty patch.
		resp = admission.Allowed("")
	}
	if len(recorded) > 0 {
		// A dry run is silent for the user: the would-be patch goes to the
		// API server's audit log and to ours.
		raw, err := json.Marshal(recorded)
		if err != nil {
			return h.fail(ctx, in, err)
		}
		if resp.AuditAnnotations == nil {
			resp.AuditAnnotations = map[string]string{}
		}
		resp.AuditAnnotations["dryrun.patch"] = string(raw)
		for _, intent := range m.Recorded() {
			resp.AuditAnnotations["dryrun."+strings.ToLower(intent.Code)+".intent"] = mutators.Describe(intent)
		}
		h.Log.Info("dry run: would patch", "object", id, "codes", codes(m.Recorded()), "patch", guard.Describe(recorded), "dryRun", in.DryRun)
		var described []string
		for _, intent := range m.Recorded() {
			described = append(described, mutators.Describe(intent))
		}
		h.patchEvent(req, in, codes(m.Recorded()), described)
		if decision == "allowed" {
			decision = "dryrun"
		}
	}
	return resp, decision
}

// codes lists the rule codes of intents.
func codes(intents []engine.Intent) []string {
	out := make([]string, 0, len(intents))
	for _, in := range intents {
		out = append(out, in.Code)
	}
	return out
}

// Handle answers a validating admission request.
func (h *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return h.observe(ctx, "validate", req, h.handle)
}

// observe runs a decision on a worker within the request's deadline, times
// it and counts it. Whatever goes wrong on the way is an answer for this
// request alone: a panic is an internal error, no free worker is an overload
// (codes 429 and 503, which the server in front answers with those HTTP
// statuses), an evaluation past its deadline is an error.
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
	// The job writes its own answer: when the deadline passes first, it may
	// still be running while this request is answered.
	type answer struct {
		resp     admission.Response
		decision string
	}
	out := &answer{}
	err := d.Workers.Do(ctx, func() { out.resp, out.decision = decide(ctx, req) })
	resp, decision := out.resp, out.decision
	if err != nil {
		resp, decision = d.failed(req, start, err)
	}
	d.Metrics.Request(webhook, kindLabel(req.Kind.Kind), operationLabel(req.Operation), decision, time.Since(start))
	return resp
}

// kindLabel is the request's kind as a metric label: a handled kind, or
// "other" (the client names the kind; a label per made-up kind would grow
// without bound).
func kindLabel(kind string) string {
	if slices.Contains(object.Kinds, kind) {
		return kind
	}
	return "other"
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

// failed answers a request whose job did not give an answer.
func (d *Deps) failed(req admission.Request, start time.Time, err error) (admission.Response, string) {
	id := requestID(req)
	var busy *BusyError
	var pe *guard.PanicError
	switch {
	case errors.As(err, &pe):
		return d.panicked(id, pe)
	case errors.As(err, &busy) && busy.Err == nil:
		d.Log.Info("overloaded: request refused", "object", id, "workers", busy.Workers, "queue", busy.Queue)
		return admission.Errored(http.StatusTooManyRequests, fmt.Errorf("egress-guard: %s: %w", id, err)), "overloaded"
	case errors.As(err, &busy):
		d.Log.Info("overloaded: no worker before the deadline", "object", id, "waited", time.Since(start).Round(time.Millisecond))
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("egress-guard: %s: %w", id, err)), "overloaded"
	}
	return d.timedOut(id, err)
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

func (h *Validator) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	e := h.Engine()
	in, resp, skip := h.prepare(req, e)
	if skip != "" {
		return resp, skip
	}
	d, err := guard.Validate(ctx, e, in, guard.Options{})
	if err != nil {
		return h.fail(ctx, in, err)
	}
	for _, v := range d.Violations {
		h.Metrics.Violation(in.Kind, v.Code, string(v.Action))
	}
	id := object.ID(in.Kind, in.Namespace, in.Name)
	if !d.Allowed {
		h.Log.V(1).Info("denied", "object", id, "message", d.Message)
		return admission.Denied(d.Message).WithWarnings(d.Warnings...), "denied"
	}
	// Admitted: the warn and dry-run violations are recorded in the audit
	// annotations (warn.<code>.<n>, dryrun.<code>.<n>), the log and Events.
	resp = admission.Allowed("").WithWarnings(d.Warnings...)
	seen := map[string]int{}
	for _, v := range d.Violations {
		if v.Action != config.ActionWarn && v.Action != config.ActionDryRun {
			continue
		}
		msg := map[config.Action]string{config.ActionWarn: "warned", config.ActionDryRun: "dry run: would deny"}[v.Action]
		h.Log.Info(msg, "object", id, "code", v.Code, "action", v.Action, "field", v.Field, "message", v.Message, "dryRun", in.DryRun)
		if resp.AuditAnnotations == nil {
			resp.AuditAnnotations = map[string]string{}
		}
		key := string(v.Action) + "." + strings.ToLower(v.Code)
		resp.AuditAnnotations[fmt.Sprintf("%s.%d", key, seen[key])] = v.Message
		seen[key]++
	}
	h.violationEvents(req, in, d.Violations)
	if len(d.Recorded) > 0 {
		return resp, "dryrun"
	}
	return resp, "allowed"
}

// prepare converts the request, or answers it without evaluation: unknown
// kinds, exempt namespaces, deletes and connects are allowed untouched;
// oversized objects are denied; an unknown operation is an error.
func (d *Deps) prepare(req admission.Request, e guard.Engine) (engine.Request, admission.Response, string) {
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
	case admissionv1.Create, admissionv1.Update:
	case admissionv1.Delete, admissionv1.Connect:
		return in, admission.Allowed(""), "skipped"
	default:
		// Never admitted unevaluated: the server in front refuses these
		// reviews before they get here.
		return in, admission.Errored(http.StatusBadRequest, fmt.Errorf("egress-guard: %s: unknown operation %q (want CREATE, UPDATE, DELETE or CONNECT)", object.ID(in.Kind, in.Namespace, in.Name), req.Operation)), "error"
	}
	if why := guard.Skip(e.Config(), in.Group, in.Kind, in.Namespace); why != "" {
		return in, admission.Allowed(why), "skipped"
	}
	limit := d.MaxObjectBytes
	if limit <= 0 {
		limit = DefaultMaxObjectBytes
	}
	if n := len(req.Object.Raw); n > limit {
		msg := fmt.Sprintf("egress-guard denied %s: the object is %d bytes, over the %d-byte limit", object.ID(in.Kind, in.Namespace, in.Name), n, limit)
		return in, admission.Denied(msg), "denied"
	}
	if len(req.Object.Raw) == 0 {
		msg := fmt.Sprintf("egress-guard denied %s: the request carries no object", object.ID(in.Kind, in.Namespace, in.Name))
		return in, admission.Denied(msg), "denied"
	}
	if req.UserInfo.Username != "" {
		in.UserInfo, _ = json.Marshal(req.UserInfo)
	}
	return in, admission.Response{}, ""
}

// fail answers a request the pipeline could not decide: a malformed object is
// denied with the decoder's message naming the field; anything else is an
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
		return admission.Denied("egress-guard denied " + ie.Error()), "denied"
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
