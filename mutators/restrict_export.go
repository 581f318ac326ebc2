package mutators

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// RestrictExport narrows the namespaces a ServiceEntry is exported to: its
// external hosts are allowed only in some namespaces, and an export makes
// them reachable from the namespaces it names.
type RestrictExport struct {
	// ExportTo is the spec.exportTo the entry gets: "." (its own
	// namespace), "~" or namespace names; never "*".
	ExportTo []string `json:"exportTo,omitempty"`
}

// Describe says in one line what the mutation changes.
func (in *RestrictExport) Describe() string {
	names := make([]string, len(in.ExportTo))
	for i, ns := range in.ExportTo {
		switch ns {
		case ".":
			names[i] = "its own namespace"
		case "~":
			names[i] = "no namespace"
		default:
			names[i] = fmt.Sprintf("%q", ns)
		}
	}
	return fmt.Sprintf("spec.exportTo: exported to %s only", strings.Join(names, ", "))
}

// apply sets the entry's exportTo. An empty list, or one with "*", would
// export the entry everywhere: refused.
func (in *RestrictExport) apply(se *networkingv1.ServiceEntry) error {
	if len(in.ExportTo) == 0 || slices.Contains(in.ExportTo, "*") {
		return fmt.Errorf("intent %s needs namespaces other than \"*\", got %q", TypeRestrictExport, in.ExportTo)
	}
	se.Spec.ExportTo = slices.Clone(in.ExportTo)
	return nil
}
