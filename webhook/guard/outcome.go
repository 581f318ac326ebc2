package guard

import (
	"encoding/json"
	"fmt"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-guard/egress-guard/mutators"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/object"
)

// Outcome is everything a review decided about one object. The admission
// handlers answer with it, check prints it, the audit reports it; none of
// them decides anything of its own.
type Outcome struct {
	// ID names the object in messages: Kind namespace/name.
	ID string
	// Skipped says why the object is admitted without evaluation ("": it
	// was evaluated).
	Skipped string

	// Intents are every mutation the policies asked for, each with its
	// action.
	Intents []mutators.Intent
	// Patch is what the mutating phase applies: the deny- and warn-action
	// intents (every intent under Options.Enforce), from the object as
	// submitted to the object as stored. RFC 6902 operations, made by
	// jsonpatch from the typed object before and after, in path order; nil
	// when nothing changes.
	Patch []jsonpatch.Operation
	// WouldBePatch is the would-be patch of the dry-run intents, on top of
	// Patch: recorded, not applied.
	WouldBePatch []jsonpatch.Operation
	// Object is the object the validating phase evaluated: as submitted,
	// with Patch applied, as the API server applies it (JSON). WouldBe is
	// Object with WouldBePatch applied. Both are made for reviews with a
	// validating phase; the mutating webhook answers with the patches, and
	// its Object is the object as submitted.
	Object  []byte
	WouldBe []byte

	// Violations are every violation found, each with its action.
	Violations []engine.Violation
	// Allowed is false when a violation's action is deny.
	Allowed bool
	// Message explains a denial in one line: the object and each denying
	// violation, "CODE: message".
	Message string
	// Causes are the denying violations as the API server reports field
	// errors: the field, and the code with the message.
	Causes []metav1.StatusCause

	// Warnings are for the user (the API server passes them on, kubectl
	// prints them): each applied mutation when the object changes, each
	// warn-action violation.
	Warnings []string
	// AuditAnnotations record what was admitted but is to be known: the
	// warn-action mutations (warn.<code>.intent), the would-be patch
	// (dryrun.patch) and its intents (dryrun.<code>.intent); for an admitted
	// object, the warn- and dryrun-action violations (warn.<code>.<n>,
	// dryrun.<code>.<n>). Nil when there is none.
	AuditAnnotations map[string]string
	// Events are the same records, as Events on the object.
	Events []Event
	// Metrics are the series the object moves.
	Metrics Metrics
}

// Event is a record of something admitted that someone should know of: a
// Kubernetes Event on the object and a log entry.
type Event struct {
	Reason  string
	Message string
	// Log are the key-value pairs of its log entry.
	Log []any
}

// Event reasons.
const (
	// ReasonWouldDeny: a dry-run violation, admitted.
	ReasonWouldDeny = "EgressGuardWouldDeny"
	// ReasonWouldPatch: a dry-run mutation, not applied.
	ReasonWouldPatch = "EgressGuardWouldPatch"
	// ReasonWarning: a warn-action violation, admitted with a warning, or
	// a warn-action mutation, applied with one.
	ReasonWarning = "EgressGuardWarning"
)

// Metrics are the labels of the counters a review moves.
type Metrics struct {
	// Decision is one of the Decision* values.
	Decision string
	// Mutations: one per intent (egress_guard_mutations_total).
	Mutations []MutationSeries
	// Violations: one per violation (egress_guard_violations_total).
	Violations []ViolationSeries
}

// MutationSeries labels one mutation.
type MutationSeries struct{ Kind, Intent, Code, Action string }

// ViolationSeries labels one violation.
type ViolationSeries struct{ Kind, Code, Action string }

// The decisions, as egress_guard_admission_requests_total counts them.
const (
	DecisionAllowed = "allowed"
	DecisionPatched = "patched"
	DecisionDryRun  = "dryrun"
	DecisionDenied  = "denied"
	DecisionSkipped = "skipped"
)

func newOutcome(req engine.Request) *Outcome {
	return &Outcome{ID: object.ID(req.Kind, req.Namespace, req.Name), Allowed: true, Object: req.Object, WouldBe: req.Object}
}

// decision sums the outcome up: denied, else patched, else dryrun when
// something was recorded only, else allowed.
func (o *Outcome) decision() string {
	switch {
	case !o.Allowed:
		return DecisionDenied
	case len(o.Patch) > 0:
		return DecisionPatched
	case len(o.WouldBePatch) > 0:
		return DecisionDryRun
	}
	for _, v := range o.Violations {
		if v.Action != config.ActionDeny && v.Action != config.ActionWarn {
			return DecisionDryRun
		}
	}
	return DecisionAllowed
}

func (o *Outcome) annotate(key, value string) {
	if o.AuditAnnotations == nil {
		o.AuditAnnotations = map[string]string{}
	}
	o.AuditAnnotations[key] = value
}

func (o *Outcome) warn(what string) { o.Warnings = append(o.Warnings, "egress-guard "+o.ID+": "+what) }

func (o *Outcome) event(reason, message string, log ...any) {
	o.Events = append(o.Events, Event{Reason: reason, Message: message, Log: log})
}

// mutated records the intents and the patches made of them.
func (o *Outcome) mutated(kind string, intents, applied, recorded []mutators.Intent) {
	o.Intents = intents
	for _, in := range intents {
		o.Metrics.Mutations = append(o.Metrics.Mutations, MutationSeries{Kind: kind, Intent: in.Type, Code: in.Code, Action: string(in.Action)})
	}
	if len(o.Patch) > 0 {
		for _, in := range applied {
			o.warn(in.Describe())
		}
		// A warn-action mutation is applied and, like a warn violation,
		// recorded.
		for _, in := range applied {
			if in.Action != config.ActionWarn {
				continue
			}
			o.annotate("warn."+strings.ToLower(in.Code)+".intent", in.Describe())
			o.event(ReasonWarning, fmt.Sprintf("%s (warn, patched): %s", in.Code, in.Describe()),
				"code", in.Code, "action", in.Action, "patched", in.Describe())
		}
	}
	if len(o.WouldBePatch) > 0 {
		// A dry run is silent for the user: the would-be patch goes to the
		// API server's audit log and to ours.
		raw, _ := json.Marshal(o.WouldBePatch) // operations marshal
		o.annotate("dryrun.patch", string(raw))
		codes := make([]string, 0, len(recorded))
		described := make([]string, 0, len(recorded))
		for _, in := range recorded {
			o.annotate("dryrun."+strings.ToLower(in.Code)+".intent", in.Describe())
			codes = append(codes, in.Code)
			described = append(described, in.Describe())
		}
		o.event(ReasonWouldPatch, fmt.Sprintf("%s (dry run, would patch): %s", strings.Join(codes, ","), strings.Join(described, "; ")),
			"codes", codes, "patch", Describe(o.WouldBePatch))
	}
}

// validated records the violations and decides: a deny-action violation
// denies; the warn-action ones are warnings; an admitted object's warn- and
// dryrun-action violations are recorded.
func (o *Outcome) validated(kind string, vs []engine.Violation) {
	o.Violations = vs
	var denied []string
	for _, v := range vs {
		o.Metrics.Violations = append(o.Metrics.Violations, ViolationSeries{Kind: kind, Code: v.Code, Action: string(v.Action)})
		line := v.Code + ": " + v.Message
		switch v.Action {
		case config.ActionDeny:
			denied = append(denied, line)
			o.Causes = append(o.Causes, cause(v))
		case config.ActionWarn:
			o.warn(line)
		}
	}
	if len(denied) > 0 {
		o.Allowed = false
		o.Message = "egress-guard denied " + o.ID + ": " + strings.Join(denied, "; ")
		return
	}
	seen := map[string]int{}
	for _, v := range vs {
		var reason, what string
		switch v.Action {
		case config.ActionWarn:
			reason, what = ReasonWarning, "warn"
		case config.ActionDryRun:
			reason, what = ReasonWouldDeny, "dry run, would deny"
		default:
			continue
		}
		key := string(v.Action) + "." + strings.ToLower(v.Code)
		o.annotate(fmt.Sprintf("%s.%d", key, seen[key]), v.Message)
		seen[key]++
		o.event(reason, fmt.Sprintf("%s (%s): %s", v.Code, what, v.Message),
			"code", v.Code, "action", v.Action, "field", v.Field, "message", v.Message)
	}
}

// cause is a denying violation as a field error: kubectl and client-go show
// "field: message". The message drops the field it starts with, as rule
// messages do, and keeps the code.
func cause(v engine.Violation) metav1.StatusCause {
	msg := v.Message
	if v.Field != "" {
		msg = strings.TrimPrefix(msg, v.Field+": ")
	}
	return metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: v.Field, Message: v.Code + ": " + msg}
}
