package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// Capabilities are what the policies are compiled against: OPA's built-ins
// but the restricted ones (config.RestrictedBuiltins) the configuration does
// not allow, and no network host but those it names. A policy calling a
// built-in left out does not compile: the error names its file, line and the
// built-in.
func Capabilities(p config.Policies) *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
		_, restricted := config.RestrictedBuiltins[b.Name]
		return restricted && !slices.Contains(p.AllowedBuiltins, b.Name)
	})
	// Non-nil: an empty list allows no host (nil would allow every one).
	caps.AllowNet = append([]string{}, p.AllowedHosts...)
	return caps
}

// compile compiles the modules against caps.
func compile(modules map[string]*ast.Module, caps *ast.Capabilities) (*ast.Compiler, error) {
	compiler := ast.NewCompiler().WithEnablePrintStatements(false).WithCapabilities(caps)
	if compiler.Compile(modules); compiler.Failed() {
		for _, e := range compiler.Errors {
			name, ok := strings.CutPrefix(e.Message, "undefined function ")
			if what, restricted := config.RestrictedBuiltins[name]; ok && restricted {
				e.Message = fmt.Sprintf("built-in %s is not allowed: it %s (policies.allowedBuiltins in the configuration allows it)", name, what)
			}
		}
		return nil, fmt.Errorf("compiling policies: %w", compiler.Errors)
	}
	return compiler, nil
}
