// Package mutators applies policy intents to typed Istio objects. Each intent
// type has one mutator; the patch sent to the API server is the diff of the
// object before and after (see webhook/guard), never a hand-written path.
package mutators

import (
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// The intent types.
const (
	RouteViaGateway = "route_via_gateway"
	OriginateTLS    = "originate_tls"
)

// Apply applies every intent to obj in place.
func Apply(obj client.Object, intents []engine.Intent) error {
	var routes []engine.Intent
	for _, in := range intents {
		switch in.Type {
		case RouteViaGateway:
			routes = append(routes, in)
		case OriginateTLS:
			dr, ok := obj.(*networkingv1.DestinationRule)
			if !ok {
				return fmt.Errorf("intent %s does not apply to a %T", in.Type, obj)
			}
			if err := originateTLS(dr, in); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown intent type %q", in.Type)
		}
	}
	if len(routes) == 0 {
		return nil
	}
	vs, ok := obj.(*networkingv1.VirtualService)
	if !ok {
		return fmt.Errorf("intent %s does not apply to a %T", RouteViaGateway, obj)
	}
	return routeViaGateway(vs, routes)
}
