package guard_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egress-guard/egress-guard/mutators"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/guard"
)

// panicky is an engine whose chosen step panics; the others give one
// intent, so that the mutating phase decodes and mutates.
type panicky struct{ step string }

func (p panicky) Config() *config.Config { return config.Default() }

func (p panicky) Input(r engine.Request) (*engine.Prepared, error) {
	if p.step == guard.StepInput {
		panic("input")
	}
	return engine.Input(r)
}

func (p panicky) Intents(context.Context, *engine.Prepared) ([]mutators.Intent, error) {
	if p.step == guard.StepEvaluate {
		panic("intents")
	}
	return []mutators.Intent{originate("EGR303", config.ActionDeny)}, nil
}

func (p panicky) Violations(context.Context, *engine.Prepared) ([]engine.Violation, error) {
	if p.step == guard.StepEvaluate {
		var vs []engine.Violation
		_ = vs[3]
	}
	return nil, nil
}

func originate(code string, action config.Action) mutators.Intent {
	return mutators.Intent{Type: mutators.TypeOriginateTLS, Code: code, Action: action,
		OriginateTLS: &mutators.OriginateTLS{Port: 443, Mode: "MUTUAL", CredentialName: "test.client", SNI: "test.com"}}
}

const destinationRule = `{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
 "metadata": {"name": "dr", "namespace": "default"}, "spec": {"host": "test.com"}}`

func drRequest() engine.Request {
	return engine.Request{Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule", Namespace: "default", Name: "dr", Object: []byte(destinationRule)}
}

// A panic in any step of the pipeline is returned as a *PanicError naming
// the step, never as an input error (which would deny the object as
// malformed), and never escapes.
func TestPanicsAreErrors(t *testing.T) {
	req := drRequest()
	boom := func(client.Object, []mutators.Intent) error { panic("mutator") }
	for _, tc := range []struct {
		name, step string
		opts       guard.Options
		value      string
	}{
		{"input of the mutating phase", guard.StepInput, guard.Options{Phases: guard.Mutating}, "input"},
		{"evaluation of the intents", guard.StepEvaluate, guard.Options{Phases: guard.Mutating}, "intents"},
		{"a mutator", guard.StepMutate, guard.Options{Phases: guard.Mutating, Mutate: boom}, "mutator"},
		{"a mutator, both phases", guard.StepMutate, guard.Options{Mutate: boom}, "mutator"},
		{"input of the validating phase", guard.StepInput, guard.Options{Phases: guard.Validating}, "input"},
		{"evaluation of the violations", guard.StepEvaluate, guard.Options{Phases: guard.Validating}, "index out of range [3] with length 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := guard.Review(context.Background(), panicky{tc.step}, req, tc.opts)
			var pe *guard.PanicError
			var ie *guard.InputError
			if !errors.As(err, &pe) || errors.As(err, &ie) || o != nil {
				t.Fatalf("want a PanicError and no outcome, got %#v, %v", err, o)
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
	o, err := guard.Review(context.Background(), panicky{}, req, guard.Options{Phases: guard.Mutating})
	if err != nil || len(o.Intents) != 1 || len(o.Patch) == 0 || o.Metrics.Decision != guard.DecisionPatched {
		t.Fatalf("Review: %v %+v", err, o)
	}
}

// fixed is an engine that returns the same intents and violations for every
// object.
type fixed struct {
	cfg        *config.Config
	intents    []mutators.Intent
	violations []engine.Violation
	// inputs counts the policy inputs built.
	inputs int
}

func (f *fixed) Config() *config.Config { return f.cfg }

func (f *fixed) Input(r engine.Request) (*engine.Prepared, error) {
	f.inputs++
	return engine.Input(r)
}

func (f *fixed) Intents(context.Context, *engine.Prepared) ([]mutators.Intent, error) {
	return f.intents, nil
}

func (f *fixed) Violations(context.Context, *engine.Prepared) ([]engine.Violation, error) {
	return f.violations, nil
}

const virtualService = `{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
 "metadata": {"name": "vs", "namespace": "default"},
 "spec": {"hosts": ["a.com", "b.com"], "http": [
  {"name": "a", "route": [{"destination": {"host": "a.com"}}]},
  {"name": "b", "route": [{"destination": {"host": "b.com"}}]}]}}`

func route(index int, code string, action config.Action) mutators.Intent {
	return mutators.Intent{Type: mutators.TypeRouteViaGateway, Code: code, Action: action,
		RouteViaGateway: &mutators.RouteViaGateway{Section: "http", Index: index, GatewayHost: "gw.example", Gateway: "istio-system/egress", GatewayPort: 80}}
}

func vsRequest() engine.Request {
	return engine.Request{Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: "VirtualService", Namespace: "default", Name: "vs", Object: []byte(virtualService)}
}

func paths(t *testing.T, o *guard.Outcome, wouldBe bool) []string {
	t.Helper()
	ops := o.Patch
	if wouldBe {
		ops = o.WouldBePatch
	}
	var out []string
	for _, op := range ops {
		out = append(out, op.Operation+" "+op.Path)
	}
	return out
}

// An applied and a dry-run intent on one object: the patch applies the
// first; the would-be patch, on top of it, the second, each naming its
// route by its place in the object as submitted. The object is decoded
// once, and copied for the second state.
func TestAppliedAndDryRunIntents(t *testing.T) {
	e := &fixed{cfg: config.Default(), intents: []mutators.Intent{route(0, "EGR201", config.ActionDeny), route(1, "EGR202", config.ActionDryRun)}}
	var seen []client.Object
	var counts []int
	mutate := func(obj client.Object, in []mutators.Intent) error {
		seen, counts = append(seen, obj), append(counts, len(in))
		return mutators.Apply(obj, in)
	}
	o, err := guard.Review(context.Background(), e, vsRequest(), guard.Options{Strict: true, Mutate: mutate})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] == seen[1] || !slices.Equal(counts, []int{1, 2}) {
		t.Fatalf("mutators called on %d objects with %v intents; want the applied one on a copy, then every intent", len(seen), counts)
	}
	var stored, wouldBe struct {
		Spec struct {
			HTTP []struct {
				Name string `json:"name"`
			} `json:"http"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(o.Object, &stored); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(o.WouldBe, &wouldBe); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range stored.Spec.HTTP {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"a", "a-egress", "b"}) {
		t.Errorf("stored routes %v: route a split, b untouched", names)
	}
	names = nil
	for _, r := range wouldBe.Spec.HTTP {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"a", "a-egress", "b", "b-egress"}) {
		t.Errorf("would-be routes %v: both split", names)
	}
	if len(o.Patch) == 0 || len(o.WouldBePatch) == 0 {
		t.Fatalf("patch %v, would-be patch %v", o.Patch, o.WouldBePatch)
	}
	if o.Metrics.Decision != guard.DecisionPatched || len(o.Metrics.Mutations) != 2 {
		t.Errorf("metrics %+v", o.Metrics)
	}
	if len(o.Warnings) != 1 || !strings.Contains(o.Warnings[0], "egress-guard VirtualService default/vs: spec.http[0]: routed through") {
		t.Errorf("warnings %q: the applied intent alone", o.Warnings)
	}
	keys := keysOf(o.AuditAnnotations)
	if !slices.Equal(keys, []string{"dryrun.egr202.intent", "dryrun.patch"}) {
		t.Errorf("audit annotations %v", keys)
	}
	if len(o.Events) != 1 || o.Events[0].Reason != guard.ReasonWouldPatch || !strings.HasPrefix(o.Events[0].Message, "EGR202 (dry run, would patch): spec.http[1]") {
		t.Errorf("events %+v", o.Events)
	}

	// Enforced, as the audit reviews: every intent applied, nothing
	// recorded, the result validated.
	o, err = guard.Review(context.Background(), e, vsRequest(), guard.Options{Enforce: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.WouldBePatch) != 0 || string(o.Object) != string(o.WouldBe) || !strings.Contains(string(o.Object), `"b-egress"`) {
		t.Errorf("enforced: would-be patch %v, object %s", o.WouldBePatch, o.Object)
	}
}

func keysOf(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Violations are decided by their actions: deny denies with one line and a
// cause per denying violation; warn warns; an admitted object records its
// warn and dry-run violations.
func TestViolations(t *testing.T) {
	deny := engine.Violation{Code: "EGR101", Message: `spec.hosts[0]: external host "a.com" is not allowed`, Field: "spec.hosts[0]", Action: config.ActionDeny}
	warn := engine.Violation{Code: "EGR102", Message: "spec.exportTo: exported to every namespace", Field: "spec.exportTo", Action: config.ActionWarn}
	dry := engine.Violation{Code: "EGR103", Message: "no field named here", Action: config.ActionDryRun}
	review := func(vs ...engine.Violation) *guard.Outcome {
		t.Helper()
		e := &fixed{cfg: config.Default(), violations: vs}
		o, err := guard.Review(context.Background(), e, vsRequest(), guard.Options{Phases: guard.Validating})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}

	o := review(deny, warn, dry)
	if o.Allowed || o.Metrics.Decision != guard.DecisionDenied {
		t.Fatalf("allowed %v, decision %s", o.Allowed, o.Metrics.Decision)
	}
	if want := `egress-guard denied VirtualService default/vs: EGR101: spec.hosts[0]: external host "a.com" is not allowed`; o.Message != want {
		t.Errorf("message %q, want %q", o.Message, want)
	}
	want := []metav1.StatusCause{{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.hosts[0]", Message: `EGR101: external host "a.com" is not allowed`}}
	if !slices.Equal(o.Causes, want) {
		t.Errorf("causes %+v, want %+v", o.Causes, want)
	}
	if len(o.Warnings) != 1 || o.Warnings[0] != "egress-guard VirtualService default/vs: EGR102: spec.exportTo: exported to every namespace" {
		t.Errorf("warnings %q", o.Warnings)
	}
	if o.AuditAnnotations != nil || o.Events != nil {
		t.Errorf("a denial records nothing else: %v %v", o.AuditAnnotations, o.Events)
	}
	if len(o.Metrics.Violations) != 3 {
		t.Errorf("violation series %v", o.Metrics.Violations)
	}

	o = review(warn, dry, dry)
	if !o.Allowed || o.Metrics.Decision != guard.DecisionDryRun || len(o.Causes) != 0 {
		t.Fatalf("allowed %v, decision %s, causes %v", o.Allowed, o.Metrics.Decision, o.Causes)
	}
	if keys := keysOf(o.AuditAnnotations); !slices.Equal(keys, []string{"dryrun.egr103.0", "dryrun.egr103.1", "warn.egr102.0"}) {
		t.Errorf("audit annotations %v", keys)
	}
	var reasons []string
	for _, e := range o.Events {
		reasons = append(reasons, e.Reason)
	}
	if !slices.Equal(reasons, []string{guard.ReasonWarning, guard.ReasonWouldDeny, guard.ReasonWouldDeny}) {
		t.Errorf("event reasons %v", reasons)
	}

	if o := review(warn); o.Metrics.Decision != guard.DecisionAllowed {
		t.Errorf("warn alone: decision %s", o.Metrics.Decision)
	}
}

// Skipped, too large, missing: decided before any evaluation.
func TestBeforeEvaluation(t *testing.T) {
	cfg := config.Default()
	cfg.ExemptNamespaces = []string{"default"}
	e := &fixed{cfg: cfg, violations: []engine.Violation{{Code: "EGR101", Message: "m", Action: config.ActionDeny}}}
	o, err := guard.Review(context.Background(), e, vsRequest(), guard.Options{MaxObjectBytes: 1})
	if err != nil || o.Skipped != "namespace exempt" || !o.Allowed || o.Metrics.Decision != guard.DecisionSkipped || e.inputs != 0 {
		t.Fatalf("exempt namespace, even when too large: %v %+v", err, o)
	}
	e.cfg = config.Default()
	var ie *guard.InputError
	if _, err := guard.Review(context.Background(), e, vsRequest(), guard.Options{MaxObjectBytes: 10}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "VirtualService default/vs: the object is ") {
		t.Errorf("too large: %v", err)
	}
	req := vsRequest()
	req.Object = nil
	if _, err := guard.Review(context.Background(), e, req, guard.Options{}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "carries no object") {
		t.Errorf("no object: %v", err)
	}
	if e.inputs != 0 {
		t.Errorf("%d inputs built", e.inputs)
	}
}

// Without a change, both phases share one policy input; a change is
// validated as the API server stores it.
func TestOneInputWhenNothingChanges(t *testing.T) {
	e := &fixed{cfg: config.Default()}
	if _, err := guard.Review(context.Background(), e, vsRequest(), guard.Options{}); err != nil || e.inputs != 1 {
		t.Errorf("no intents: %d inputs, %v", e.inputs, err)
	}
	e = &fixed{cfg: config.Default(), intents: []mutators.Intent{route(0, "EGR201", config.ActionDeny)}}
	if _, err := guard.Review(context.Background(), e, vsRequest(), guard.Options{}); err != nil || e.inputs != 2 {
		t.Errorf("a patch: %d inputs, %v", e.inputs, err)
	}
}

// A policed kind without an Istio type (here Gateway) reaches the policies as
// its JSON: a platform rule's violation denies it, its object is not decoded
// (an odd spec is the rule's to judge), and a mutation asked for it is an
// error, not a silent no-op. An unpoliced kind is skipped.
func TestJSONKinds(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.Kinds = append(cfg.Kinds, config.PolicedKind{Group: "networking.istio.io", Version: "v1", Kind: "Gateway", Resource: "gateways"})
	policy := engine.PolicyFile{Path: "gw.rego", Source: []byte(`package egressguard.rules.gateway

deny contains {"code": "PLT101", "field": "spec.servers", "message": "spec.servers: not one"} if count(input.object.spec.servers) != 1

intents contains {"type": "originate_tls", "code": "PLT101"} if input.object.metadata.labels.mutate
`)}
	e, err := engine.New(ctx, engine.Options{Config: cfg, Policies: []engine.PolicyFile{policy}})
	if err != nil {
		t.Fatal(err)
	}
	gateway := func(spec, labels string) engine.Request {
		obj := `{"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default", "labels": ` + labels + `}, "spec": ` + spec + `}`
		return engine.Request{Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: "Gateway", Namespace: "default", Name: "gw", Object: []byte(obj), Checked: true}
	}
	// The servers' port is not a number: the Istio type would refuse it.
	o, err := guard.Review(ctx, e, gateway(`{"servers": [{"port": "eighty"}, {}]}`, `{}`), guard.Options{})
	if err != nil || o.Allowed || len(o.Violations) != 1 || o.Violations[0].Code != "PLT101" {
		t.Fatalf("a Gateway with two servers: %+v, %v", o, err)
	}
	if o, err := guard.Review(ctx, e, gateway(`{"servers": [{"port": "eighty"}]}`, `{}`), guard.Options{}); err != nil || !o.Allowed || len(o.Violations) != 0 {
		t.Errorf("a Gateway with one server: %+v, %v", o, err)
	}
	_, err = guard.Review(ctx, e, gateway(`{"servers": [{}]}`, `{"mutate": "yes"}`), guard.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not mutate") || !strings.Contains(err.Error(), "Gateway default/gw") {
		t.Errorf("a mutation of a Gateway: %v", err)
	}
	other := gateway(`{"servers": []}`, `{}`)
	other.Group = "gateway.networking.k8s.io"
	if o, err := guard.Review(ctx, e, other, guard.Options{}); err != nil || o.Skipped != "kind not policed" || !o.Allowed {
		t.Errorf("a Gateway of another group: %+v, %v", o, err)
	}
}

// A Sidecar is decoded into its Istio type (the pack reads it): a spec Istio
// cannot decode is an input error naming the field.
func TestSidecarIsTyped(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, engine.Options{Config: config.Default()})
	if err != nil {
		t.Fatal(err)
	}
	sidecar := func(spec string) engine.Request {
		obj := `{"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "sc", "namespace": "default"}, "spec": ` + spec + `}`
		return engine.Request{Operation: "CREATE", Group: "networking.istio.io", Version: "v1", Kind: "Sidecar", Namespace: "default", Name: "sc", Object: []byte(obj), Checked: true}
	}
	_, err = guard.Review(ctx, e, sidecar(`{"egress": "everything"}`), guard.Options{})
	var ie *guard.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "spec.egress") {
		t.Errorf("an undecodable Sidecar: %v", err)
	}
	if o, err := guard.Review(ctx, e, sidecar(`{"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}`), guard.Options{}); err != nil || !o.Allowed {
		t.Errorf("a REGISTRY_ONLY Sidecar: %+v, %v", o, err)
	}
}
