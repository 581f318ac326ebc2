// Package audit evaluates Istio objects at rest with the admission engine and
// reports what enforcement would do to each: the patch the mutating webhook
// would apply and the violations the validating webhook would find in the
// patched object, each with the action the configuration gives it today.
//
// The findings are what an enforcing guard would deny or patch, so that a
// platform team running in dry run can show each application team what
// switching to enforcement will break.
package audit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "gomodules.xyz/jsonpatch/v2"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/object"
)

// Outcome is a finding's result, as OpenReports names them.
type Outcome string

// The outcomes.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Warn Outcome = "warn"
	// Error: the object could not be evaluated.
	Error Outcome = "error"
)

// Severity is a finding's severity, as OpenReports names them.
type Severity string

// The severities used.
const (
	// High: enforcement would deny the object.
	High Severity = "high"
	// Medium: enforcement would change the object.
	Medium Severity = "medium"
	// Info: nothing to do.
	Info Severity = "info"
)

// Finding types.
const (
	TypeViolation = "violation"
	TypeMutation  = "mutation"
)

// Object identifies an audited object.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	// Source is where the object was read: file:document, or the cluster.
	Source string `json:"source,omitempty"`
}

// Finding is one thing enforcement would do to an object.
type Finding struct {
	// Code is the rule; for a mutation, the rule it fixes.
	Code string `json:"code"`
	// Type is violation or mutation; Intent names a mutation's kind.
	Type   string `json:"type"`
	Intent string `json:"intent,omitempty"`
	// Action is what the configuration does today (deny, warn, dryrun).
	Action   config.Action `json:"action"`
	Outcome  Outcome       `json:"result"`
	Severity Severity      `json:"severity"`
	Field    string        `json:"field,omitempty"`
	Message  string        `json:"message"`
}

// Result is the audit of one object.
type Result struct {
	Object Object `json:"object"`
	// Skipped says why the object was not evaluated (exempt namespace).
	Skipped string `json:"skipped,omitempty"`
	// Error says why the object could not be evaluated: it does not decode
	// into its Istio type (the message names the field), or its evaluation
	// failed with an internal error (a panic, recovered).
	Error    string    `json:"error,omitempty"`
	Findings []Finding `json:"findings"`
	// Patch is the would-be patch of every mutation, dry runs included.
	Patch []jsonpatch.Operation `json:"patch,omitempty"`
	// Diff shows Patch as a unified diff of the object's YAML.
	Diff string `json:"diff,omitempty"`
}

// Compliant reports whether enforcement would leave the object alone.
func (r *Result) Compliant() bool { return len(r.Findings) == 0 && r.Error == "" }

// Audit is the outcome of a run.
type Audit struct {
	Generated time.Time `json:"generated"`
	// Enforcement is the configured default action.
	Enforcement config.Action `json:"enforcement"`
	Results     []Result      `json:"results"`
}

// Options tune a run.
type Options struct {
	// Workers evaluate objects in parallel (default GOMAXPROCS).
	Workers int
	// Strict rejects fields the Istio types do not have (files; objects
	// read from the API server are already pruned).
	Strict bool
	// Progress, when set, is called after each object with the count done
	// (one call at a time).
	Progress func(done, total int)
	// Now stamps the audit (default time.Now).
	Now func() time.Time
}

// Run audits docs. The documents are the whole world: the ServiceEntries
// among them are the inventory cross-object rules see. Results keep the
// order of docs. An object that cannot be decoded, or whose evaluation
// panics, gets a result with its Error (the API server would refuse it); a
// policy that fails stops the run.
func Run(ctx context.Context, e guard.Engine, docs []check.Document, opts Options) (*Audit, error) {
	workers := opts.Workers
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	a := &Audit{Generated: now().UTC(), Enforcement: e.Config().Enforcement, Results: make([]Result, len(docs))}
	var (
		next       atomic.Int64
		done       int
		progressMu sync.Mutex
		wg         sync.WaitGroup
		errOnce    sync.Once
		firstErr   error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(workers, max(len(docs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(docs) || ctx.Err() != nil {
					return
				}
				res, err := auditOne(ctx, e, docs[i], opts.Strict)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				a.Results[i] = *res
				if opts.Progress != nil {
					progressMu.Lock()
					done++
					opts.Progress(done, len(docs))
					progressMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// WhereAudit labels a panic in the audit's own part of the work on an object.
const WhereAudit = "audit"

// auditOne audits one object; a panic in its work is its result's Error.
func auditOne(ctx context.Context, e guard.Engine, d check.Document, strict bool) (*Result, error) {
	res, err := evaluate(ctx, e, d, strict)
	var pe *guard.PanicError
	if errors.As(err, &pe) {
		return &Result{
			Object:   objectOf(d),
			Error:    fmt.Sprintf("%s: %v", object.ID(d.GVK.Kind, d.Namespace, d.Name), pe),
			Findings: []Finding{},
		}, nil
	}
	return res, err
}

func objectOf(d check.Document) Object {
	return Object{APIVersion: d.GVK.GroupVersion().String(), Kind: d.GVK.Kind, Namespace: d.Namespace, Name: d.Name, UID: d.UID, Source: d.Source}
}

// evaluate reviews the object as enforcement of every rule would: every
// intent applied, dry runs included, and the result validated.
func evaluate(ctx context.Context, e guard.Engine, d check.Document, strict bool) (_ *Result, err error) {
	defer guard.Contain(WhereAudit, &err)
	res := &Result{Object: objectOf(d), Findings: []Finding{}}
	// As check does, each object is evaluated as its creation would be.
	req := engine.Request{
		Operation: "CREATE", Group: d.GVK.Group, Version: d.GVK.Version, Kind: d.GVK.Kind,
		Namespace: d.Namespace, Name: d.Name, Object: d.JSON,
	}
	o, err := guard.Review(ctx, e, req, guard.Options{Strict: strict, Enforce: true})
	if inputError(res, err) {
		return res, nil
	}
	if err != nil {
		return nil, wrap(d, err)
	}
	if o.Skipped != "" {
		res.Skipped = o.Skipped
		return res, nil
	}
	if len(o.Patch) > 0 {
		res.Patch = o.Patch
		if res.Diff, err = check.YAMLDiff(d.JSON, o.Object, "as written", "after enforcement"); err != nil {
			return nil, wrap(d, err)
		}
		for _, in := range o.Intents {
			res.Findings = append(res.Findings, Finding{
				Code: in.Code, Type: TypeMutation, Intent: in.Type, Action: in.Action,
				Outcome: outcome(in.Action), Severity: Medium, Message: in.Describe(),
			})
		}
	}
	for _, v := range o.Violations {
		res.Findings = append(res.Findings, Finding{
			Code: v.Code, Type: TypeViolation, Action: v.Action,
			Outcome: outcome(v.Action), Severity: High, Field: v.Field, Message: v.Message,
		})
	}
	return res, nil
}

// outcome maps an action to a result: a dry-run finding fails like a denied
// one, since that is what enforcement would make of it.
func outcome(a config.Action) Outcome {
	if a == config.ActionWarn {
		return Warn
	}
	return Fail
}

// inputError records err in res when the object could not be decoded.
func inputError(res *Result, err error) bool {
	var ie *guard.InputError
	if !errors.As(err, &ie) {
		return false
	}
	res.Error = ie.Error()
	res.Findings, res.Patch, res.Diff = []Finding{}, nil, ""
	return true
}

func wrap(d check.Document, err error) error {
	var ie *guard.InputError
	if errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", d.Source, err)
	}
	return fmt.Errorf("%s: %s %s/%s: %w", d.Source, d.GVK.Kind, d.Namespace, d.Name, err)
}
