// Package engine evaluates egress-guard's Rego policies. It compiles the
// embedded rule pack together with the platform's own policy files once,
// prepares the queries once, and evaluates them per object.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/egress-guard/egress-guard/policies"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// RulesPackage is the package every rule module lives under.
const RulesPackage = "egressguard.rules"

// Violation is a broken rule.
type Violation struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Field   string        `json:"field"`
	Action  config.Action `json:"action"`
}

// Intent asks a mutator to fix an object. Type selects the mutator; the other
// fields are its arguments.
type Intent struct {
	Type string `json:"type"`
	// Code is the rule the mutation fixes; the mutation takes that rule's
	// action (dryrun: recorded, not applied).
	Code   string        `json:"code,omitempty"`
	Action config.Action `json:"action,omitempty"`

	// route_via_gateway
	Section       string   `json:"section,omitempty"`
	Index         int      `json:"index,omitempty"`
	GatewayHost   string   `json:"gatewayHost,omitempty"`
	Gateway       string   `json:"gateway,omitempty"`
	GatewayPort   uint32   `json:"gatewayPort,omitempty"`
	GatewaySubset string   `json:"gatewaySubset,omitempty"`
	TargetPorts   []uint32 `json:"targetPorts,omitempty"`

	// originate_tls
	Port           uint32 `json:"port,omitempty"`
	Mode           string `json:"mode,omitempty"`
	CredentialName string `json:"credentialName,omitempty"`
	SNI            string `json:"sni,omitempty"`
}

// Inventory is what the engine knows of other objects, for cross-object rules.
type Inventory struct {
	ServiceEntries []ServiceEntryRef `json:"serviceEntries"`
}

// ServiceEntryRef is the part of a ServiceEntry other rules look at.
type ServiceEntryRef struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Hosts     []string `json:"hosts"`
	Location  string   `json:"location,omitempty"`
}

// externalHosts indexes the hosts of the MESH_EXTERNAL ServiceEntries (no
// location means MESH_EXTERNAL): the exact names, and the suffixes (".x.com")
// of "*.x.com" wildcards, sorted.
func (inv Inventory) externalHosts() (map[string]bool, []string) {
	hosts := map[string]bool{}
	suffixes := map[string]bool{}
	for _, se := range inv.ServiceEntries {
		if se.Location != "" && se.Location != "MESH_EXTERNAL" {
			continue
		}
		for _, h := range se.Hosts {
			if strings.HasPrefix(h, "*.") {
				suffixes[h[1:]] = true
				continue
			}
			hosts[h] = true
		}
	}
	sorted := make([]string, 0, len(suffixes))
	for s := range suffixes {
		sorted = append(sorted, s)
	}
	sort.Strings(sorted)
	return hosts, sorted
}

// Options configure a new Engine.
type Options struct {
	Config *config.Config
	// PolicyDirs hold the platform's own .rego files (compiled with the pack).
	PolicyDirs []string
	Inventory  Inventory
	// Evaluator picks how queries run: EvaluatorIR (the default) or
	// EvaluatorTopdown.
	Evaluator string
}

// Evaluators. EvaluatorIR runs the plans OPA's planner compiles the policies
// into (package vm); a query whose plan it cannot run falls back to topdown,
// and Engine.Fallbacks says which and why. EvaluatorTopdown runs every query
// with OPA's interpreter.
const (
	EvaluatorIR      = "ir"
	EvaluatorTopdown = "topdown"
)

// Evaluators lists the valid Options.Evaluator values.
var Evaluators = []string{EvaluatorIR, EvaluatorTopdown}

// Engine holds the compiled policies and prepared queries. It is safe for
// concurrent use and never changes; reloads build a new Engine.
type Engine struct {
	cfg *config.Config
	// all gathers every rules package (data.egressguard.main); byKind holds,
	// for each handled kind, the queries over the packages that can apply.
	all     queries
	byKind  map[string]*queries
	modules []string
	// store holds data (config and inventory) for topdown; data is the same
	// document for the IR evaluator.
	store     storage.Store
	data      vm.Value
	fallbacks []string
	// fields are the input's JSON fields the queries read (nil: all).
	fields *fieldSet
}

type queries struct {
	violations *query
	intents    *query
}

// Kinds the engine dispatches on: the package egressguard.rules.<lowercase
// kind> holds a kind's rules; other rules packages are evaluated for every kind.
var dispatchKinds = []string{"ServiceEntry", "VirtualService", "DestinationRule"}

// New compiles the policies and prepares the queries.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Config == nil {
		return nil, errors.New("engine: no config")
	}
	modules, err := loadModules(opts.PolicyDirs)
	if err != nil {
		return nil, err
	}
	parsed := map[string]*ast.Module{}
	for _, m := range modules {
		parsed[m.name] = m.module
	}
	for _, m := range dispatchModules(modules) {
		parsed[m.name] = m.module
	}
	caps := Capabilities(opts.Config.Policies)
	compiler, err := compile(parsed, caps)
	if err != nil {
		return nil, err
	}
	switch opts.Evaluator {
	case "", EvaluatorIR, EvaluatorTopdown:
	default:
		return nil, fmt.Errorf("engine: unknown evaluator %q (want one of %s)", opts.Evaluator, strings.Join(Evaluators, ", "))
	}
	doc, err := dataDocument(opts.Config, opts.Inventory)
	if err != nil {
		return nil, err
	}
	astData, err := ast.InterfaceToValue(doc)
	if err != nil {
		return nil, err
	}
	data := vm.Share(vm.FromAST(astData))
	store := inmem.NewFromObjectWithOpts(doc, inmem.OptReturnASTValuesOnRead(true))
	e := &Engine{cfg: opts.Config, byKind: map[string]*queries{}, store: store, data: data}
	for _, m := range modules {
		e.modules = append(e.modules, m.name)
	}
	qopts := queryOptions{compiler: compiler, store: store, evaluator: opts.Evaluator, capabilities: caps}
	prepare := func(pkg string) (*queries, error) {
		qs := &queries{}
		for q, dst := range map[string]**query{pkg + ".violations": &qs.violations, pkg + ".intents": &qs.intents} {
			if *dst, err = prepareQuery(ctx, q, qopts); err != nil {
				return nil, err
			}
			if r := (*dst).fallbackReason(); r != "" {
				e.fallbacks = append(e.fallbacks, q+": "+r)
			}
		}
		return qs, nil
	}
	all, err := prepare("data.egressguard.main")
	if err != nil {
		return nil, err
	}
	e.all = *all
	for _, kind := range dispatchKinds {
		if e.byKind[kind], err = prepare("data." + dispatchPackage(kind)); err != nil {
			return nil, err
		}
	}
	e.fields = e.inputFields()
	return e, nil
}

// inputFields gathers the input's JSON fields the queries read; nil when
// topdown runs any query or a query may read any field.
func (e *Engine) inputFields() *fieldSet {
	f := &fieldSet{names: map[string]bool{}}
	all := append([]*queries{&e.all}, slices.Collect(maps.Values(e.byKind))...)
	for _, qs := range all {
		for _, q := range []*query{qs.violations, qs.intents} {
			if q.program == nil {
				return nil
			}
			keys, whole := q.program.InputKeys()
			if whole {
				return nil
			}
			for _, k := range keys {
				f.names[k] = true
			}
		}
	}
	return f
}

// Fallbacks lists the queries the IR evaluator could not run, with the
// reason; topdown evaluates them.
func (e *Engine) Fallbacks() []string { return e.fallbacks }

func (e *Engine) queries(kind string) *queries {
	if q, ok := e.byKind[kind]; ok {
		return q
	}
	return &e.all
}

func dispatchPackage(kind string) string {
	return "egressguard.dispatch." + strings.ToLower(kind)
}

// dispatchModules writes, for each handled kind, a module gathering the
// rules packages that can apply to it, so that an evaluation does not visit
// the others. It leaves out the exemption check of egressguard.main: callers
// skip exempt namespaces before evaluating (guard.Skip).
func dispatchModules(modules []module) []module {
	kindPackages := map[string]bool{}
	for _, k := range dispatchKinds {
		kindPackages[strings.ToLower(k)] = true
	}
	var pkgs []string
	seen := map[string]bool{}
	for _, m := range modules {
		path := strings.TrimPrefix(m.module.Package.Path.String(), "data.")
		if !strings.HasPrefix(path, RulesPackage+".") || seen[path] {
			continue
		}
		seen[path] = true
		pkgs = append(pkgs, path)
	}
	sort.Strings(pkgs)
	out := make([]module, 0, len(dispatchKinds))
	for _, kind := range dispatchKinds {
		lower := strings.ToLower(kind)
		var b strings.Builder
		fmt.Fprintf(&b, "package %s\n\n", dispatchPackage(kind))
		for _, pkg := range pkgs {
			first, _, _ := strings.Cut(strings.TrimPrefix(pkg, RulesPackage+"."), ".")
			if kindPackages[first] && first != lower {
				continue
			}
			fmt.Fprintf(&b, "violations contains v if some v in data.%s.deny\n\n", pkg)
			fmt.Fprintf(&b, "intents contains v if some v in data.%s.intents\n\n", pkg)
		}
		name := "dispatch/" + lower + ".rego"
		m, err := parse(name, []byte(b.String()))
		if err != nil {
			panic("generated dispatch module does not parse: " + err.Error())
		}
		out = append(out, module{name, m})
	}
	return out
}

// Config is the configuration the engine was built with.
func (e *Engine) Config() *config.Config { return e.cfg }

// Modules lists the policy files compiled in, embedded ones first.
func (e *Engine) Modules() []string { return e.modules }

// Violations evaluates the rules against input.
func (e *Engine) Violations(ctx context.Context, input *Prepared) ([]Violation, error) {
	set, err := e.eval(ctx, e.queries(input.Kind).violations, input)
	if err != nil {
		return nil, err
	}
	out := make([]Violation, 0, len(set))
	for _, x := range set {
		v, err := decodeViolation(x)
		if err != nil {
			return nil, err
		}
		if v.Action != "" && !validAction(v.Action) {
			return nil, fmt.Errorf("policy rule %s returned unknown action %q", v.Code, v.Action)
		}
		v.Action = e.cfg.ActionFor(v.Code, input.Namespace, v.Action)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Code != out[j].Code {
			return out[i].Code < out[j].Code
		}
		return out[i].Field < out[j].Field
	})
	return out, nil
}

// Intents evaluates the mutation intents for input.
func (e *Engine) Intents(ctx context.Context, input *Prepared) ([]Intent, error) {
	set, err := e.eval(ctx, e.queries(input.Kind).intents, input)
	if err != nil || len(set) == 0 {
		return nil, err
	}
	out := make([]Intent, 0, len(set))
	for _, x := range set {
		in, err := decodeIntent(x)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	for i := range out {
		if out[i].Action != "" && !validAction(out[i].Action) {
			return nil, fmt.Errorf("policy intent %s returned unknown action %q", out[i].Type, out[i].Action)
		}
		out[i].Action = e.cfg.ActionFor(out[i].Code, input.Namespace, out[i].Action)
	}
	// Mutators apply intents in order: the same order every time, whichever
	// evaluator ran.
	if len(out) > 1 {
		type keyed struct {
			key string
			in  Intent
		}
		ks := make([]keyed, len(out))
		for i, in := range out {
			b, _ := json.Marshal(in)
			ks[i] = keyed{string(b), in}
		}
		slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
		for i := range ks {
			out[i] = ks[i].in
		}
	}
	return out, nil
}

// eval runs a query and returns the elements of the set it yields.
func (e *Engine) eval(ctx context.Context, q *query, input *Prepared) ([]vm.Value, error) {
	if !input.covers(e.fields) {
		// prepared by another engine, reading fewer fields
		var err error
		if input, err = e.Input(input.req); err != nil {
			return nil, err
		}
	}
	value, err := q.value(ctx, input, e.data)
	if err != nil || value == nil {
		return nil, err
	}
	switch v := value.(type) {
	case *vm.Set:
		return v.Elems(), nil
	case *vm.Array:
		// topdown's results come as JSON: a set is an array
		if q.program == nil {
			return v.Elems(), nil
		}
	}
	return nil, fmt.Errorf("policy result is not a set: %v", vm.ToAST(value))
}

func validAction(a config.Action) bool {
	for _, x := range config.Actions {
		if a == x {
			return true
		}
	}
	return false
}

// dataDocument is the policies' data: the configuration with values derived
// from it, and the inventory.
func dataDocument(cfg *config.Config, inv Inventory) (map[string]any, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	doc["gatewayHost"] = cfg.GatewayHost()
	doc["gatewayNames"] = map[string]bool{
		cfg.GatewayHost(): true,
		cfg.Gateway.Service + "." + cfg.Gateway.Namespace:          true,
		cfg.Gateway.Service + "." + cfg.Gateway.Namespace + ".svc": true,
	}
	doc["serviceSuffix"] = ".svc." + cfg.ClusterDomain
	if inv.ServiceEntries == nil {
		inv.ServiceEntries = []ServiceEntryRef{}
	}
	hosts, suffixes := inv.externalHosts()
	raw, err = json.Marshal(map[string]any{"config": doc, "inventory": map[string]any{
		"serviceEntries":   inv.ServiceEntries,
		"externalHosts":    hosts,
		"externalSuffixes": suffixes,
	}})
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, err
	}
	return data, nil
}

type module struct {
	name   string
	module *ast.Module
}

// loadModules parses the embedded pack and the .rego files (not _test.rego)
// of each directory. A platform module must live under egressguard.rules.
func loadModules(dirs []string) ([]module, error) {
	var out []module
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isPolicy(path) {
			return err
		}
		src, err := fs.ReadFile(policies.FS, path)
		if err != nil {
			return err
		}
		m, err := parse("policies/"+path, src)
		if err != nil {
			return err
		}
		out = append(out, module{"policies/" + path, m})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		var names []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// ConfigMap mounts keep the files in ..data/ and link them from the top.
			if d.IsDir() && strings.HasPrefix(d.Name(), "..") {
				return filepath.SkipDir
			}
			if !d.IsDir() && isPolicy(path) {
				names = append(names, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading policies: %w", err)
		}
		for _, path := range names {
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("reading policies: %w", err)
			}
			m, err := parse(path, src)
			if err != nil {
				return nil, err
			}
			pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
			if !strings.HasPrefix(pkg, RulesPackage+".") {
				return nil, fmt.Errorf("%s:%d: package %s must be under %s", path, m.Package.Location.Row, pkg, RulesPackage)
			}
			out = append(out, module{path, m})
		}
	}
	return out, nil
}

func isPolicy(path string) bool {
	return strings.HasSuffix(path, ".rego") && !strings.HasSuffix(path, "_test.rego")
}

func parse(name string, src []byte) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parsing policies: %w", err)
	}
	return m, nil
}
