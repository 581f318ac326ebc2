package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egress-guard/egress-guard/policies"
	"github.com/egress-guard/egress-guard/webhook/config"
)

// policy is what compiling gives: the prepared queries, per handled kind.
// It is built once per configuration or policy change and shared by every
// engine WithInventory derives; it never changes.
type policy struct {
	cfg *config.Config
	// all gathers every rules package (data.egressguard.main); byKind holds,
	// for each handled kind, the queries over the packages that can apply.
	all     queries
	byKind  map[string]*queries
	modules []string
	// fallbacks say which queries topdown runs, and why.
	fallbacks []string
	// fields are the input's JSON fields the queries of a kind read (nil:
	// all): kindFields for the dispatched kinds, fields for the others.
	fields     *fieldSet
	kindFields map[string]*fieldSet
}

type queries struct {
	violations *query
	intents    *query
}

// dispatchKinds are the kinds the engine dispatches on, the policed ones
// (config kinds): the package egressguard.rules.<lowercase kind> holds a
// kind's rules; other rules packages are evaluated for every kind.
func dispatchKinds(cfg *config.Config) []string {
	var kinds []string
	for _, k := range cfg.AllPoliced() {
		if !slices.Contains(kinds, k.Kind) {
			kinds = append(kinds, k.Kind)
		}
	}
	return kinds
}

// PolicyFile is a platform policy file as read: its path and contents.
type PolicyFile struct {
	Path   string
	Source []byte
}

// compilePolicy reads, parses and compiles the policies and prepares the
// queries.
func compilePolicy(ctx context.Context, opts Options) (*policy, error) {
	files, err := ReadPolicies(opts.PolicyDirs)
	if err != nil {
		return nil, err
	}
	modules, err := loadModules(append(files, opts.Policies...))
	if err != nil {
		return nil, err
	}
	parsed := map[string]*ast.Module{}
	for _, m := range modules {
		parsed[m.name] = m.module
	}
	kinds := dispatchKinds(opts.Config)
	for _, m := range dispatchModules(modules, kinds) {
		parsed[m.name] = m.module
	}
	caps := Capabilities(opts.Config.Policies)
	compiler, err := compile(parsed, caps)
	if err != nil {
		return nil, err
	}
	p := &policy{cfg: opts.Config, byKind: map[string]*queries{}}
	for _, m := range modules {
		p.modules = append(p.modules, m.name)
	}
	qopts := queryOptions{compiler: compiler, evaluator: opts.Evaluator, capabilities: caps}
	prepare := func(pkg string) (*queries, error) {
		qs := &queries{}
		for _, x := range []struct {
			rule string
			dst  **query
		}{{"violations", &qs.violations}, {"intents", &qs.intents}} {
			q, err := prepareQuery(ctx, pkg+"."+x.rule, qopts)
			if err != nil {
				return nil, err
			}
			if r := q.fallbackReason(); r != "" {
				p.fallbacks = append(p.fallbacks, q.text+": "+r)
			}
			*x.dst = q
		}
		return qs, nil
	}
	all, err := prepare("data.egressguard.main")
	if err != nil {
		return nil, err
	}
	p.all = *all
	for _, kind := range kinds {
		if p.byKind[kind], err = prepare("data." + dispatchPackage(kind)); err != nil {
			return nil, err
		}
	}
	p.fields = inputFields(&p.all)
	p.kindFields = map[string]*fieldSet{}
	for kind, qs := range p.byKind {
		p.kindFields[kind] = inputFields(qs)
	}
	return p, nil
}

// inputFields gathers the input's JSON fields the queries read; nil when a
// query may read any field (topdown runs it, or it reads the input whole).
func inputFields(qs *queries) *fieldSet {
	f := &fieldSet{names: map[string]bool{}}
	for _, q := range []*query{qs.violations, qs.intents} {
		keys, whole := q.inputKeys()
		if whole {
			return nil
		}
		for _, k := range keys {
			f.names[k] = true
		}
	}
	return f
}

// fieldsOf are the input's JSON fields the queries of kind read.
func (p *policy) fieldsOf(kind string) *fieldSet {
	if f, ok := p.kindFields[kind]; ok {
		return f
	}
	return p.fields
}

func (p *policy) queries(kind string) *queries {
	if q, ok := p.byKind[kind]; ok {
		return q
	}
	return &p.all
}

func dispatchPackage(kind string) string {
	return "egressguard.dispatch." + strings.ToLower(kind)
}

// dispatchModules writes, for each handled kind, a module gathering the
// rules packages that can apply to it, so that an evaluation does not visit
// the others. It leaves out the exemption check of egressguard.main: callers
// skip exempt namespaces before evaluating (guard.Skip).
func dispatchModules(modules []module, kinds []string) []module {
	kindPackages := map[string]bool{}
	for _, k := range kinds {
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
	out := make([]module, 0, len(kinds))
	for _, kind := range kinds {
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

type module struct {
	name   string
	module *ast.Module
}

// ReadPolicies reads the policy files of each directory: the .rego files,
// not the _test.rego ones, sorted by path within a directory. ConfigMap
// mounts keep the files in ..data/ and link them from the top: the links
// are what count.
func ReadPolicies(dirs []string) ([]PolicyFile, error) {
	var out []PolicyFile
	for _, dir := range dirs {
		var names []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
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
			out = append(out, PolicyFile{Path: path, Source: src})
		}
	}
	return out, nil
}

// loadModules parses the embedded pack and the platform's files. A platform
// module must live under egressguard.rules.
func loadModules(files []PolicyFile) ([]module, error) {
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
	for _, f := range files {
		m, err := parse(f.Path, f.Source)
		if err != nil {
			return nil, err
		}
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if !strings.HasPrefix(pkg, RulesPackage+".") {
			return nil, fmt.Errorf("%s:%d: package %s must be under %s", f.Path, m.Package.Location.Row, pkg, RulesPackage)
		}
		out = append(out, module{f.Path, m})
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
