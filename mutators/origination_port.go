package mutators

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// OriginationPort sends a gateway leg's destination (Leg) to the port the
// platform originates TLS on for its host (To): the gateway then originates
// instead of sending the traffic on in plain text.
type OriginationPort struct {
	Leg LegRef `json:"leg"`
	To  uint32 `json:"to,omitempty"`
}

// LegRef names a route destination of a VirtualService as submitted:
// spec.<Section>[<Index>].route[<Route>], Section http or tcp (a TLS leg
// carries its own TLS).
type LegRef struct {
	Section string `json:"section"`
	Index   int    `json:"index"`
	Route   int    `json:"route"`
}

// Describe says in one line what the mutation changes.
func (in *OriginationPort) Describe() string {
	return fmt.Sprintf("spec.%s[%d].route[%d].destination.port.number: sent to the origination port %d", in.Leg.Section, in.Leg.Index, in.Leg.Route, in.To)
}

// apply sets the destination's port; a destination that is not there is an
// error (the intent names the object as submitted).
func (in *OriginationPort) apply(vs *networkingv1.VirtualService) error {
	if in.To == 0 || in.To > 65535 {
		return fmt.Errorf("intent %s for spec.%s[%d].route[%d]: port %d out of range", TypeOriginationPort, in.Leg.Section, in.Leg.Index, in.Leg.Route, in.To)
	}
	var dest *networking.Destination
	switch in.Leg.Section {
	case "http":
		if in.Leg.Index >= 0 && in.Leg.Index < len(vs.Spec.Http) && in.Leg.Route >= 0 && in.Leg.Route < len(vs.Spec.Http[in.Leg.Index].Route) {
			dest = vs.Spec.Http[in.Leg.Index].Route[in.Leg.Route].GetDestination()
		}
	case "tcp":
		if in.Leg.Index >= 0 && in.Leg.Index < len(vs.Spec.Tcp) && in.Leg.Route >= 0 && in.Leg.Route < len(vs.Spec.Tcp[in.Leg.Index].Route) {
			dest = vs.Spec.Tcp[in.Leg.Index].Route[in.Leg.Route].GetDestination()
		}
	default:
		return fmt.Errorf("intent %s: section %q is not http or tcp", TypeOriginationPort, in.Leg.Section)
	}
	if dest == nil {
		return fmt.Errorf("intent %s: the object has no destination at spec.%s[%d].route[%d]", TypeOriginationPort, in.Leg.Section, in.Leg.Index, in.Leg.Route)
	}
	dest.Port = &networking.PortSelector{Number: in.To}
	return nil
}
