// Package mutators applies policy intents to typed Istio objects. Each intent
// type is a Go type with one mutator; the patch sent to the API server is the
// diff of the object before and after (see webhook/guard), never a
// hand-written path.
package mutators

import (
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egress-guard/egress-guard/webhook/config"
)

// The intent types, as policies name them in an intent's "type".
const (
	TypeRouteViaGateway = "route_via_gateway"
	TypeOriginateTLS    = "originate_tls"
	TypeRestrictExport  = "restrict_export"
	TypeOriginationPort = "origination_port"
)

// Intent is one mutation a policy asks for: the rule it fixes, that rule's
// action, and the typed mutation, one of the embedded pointers (the one Type
// names; none for a type this package does not know, which Apply refuses).
//
// Its JSON is the policy's intent as written: type, code, action and the
// mutation's fields side by side.
type Intent struct {
	Type string `json:"type"`
	// Code is the rule the mutation fixes; the mutation takes that rule's
	// action (dryrun: recorded, not applied).
	Code   string        `json:"code,omitempty"`
	Action config.Action `json:"action,omitempty"`

	*RouteViaGateway
	*OriginateTLS
	*RestrictExport
	*OriginationPort
}

// Describe says in one line what the intent changes, for admission warnings,
// audit annotations and reports.
func (in Intent) Describe() string {
	switch {
	case in.RouteViaGateway != nil:
		return in.RouteViaGateway.Describe()
	case in.OriginateTLS != nil:
		return in.OriginateTLS.Describe()
	case in.RestrictExport != nil:
		return in.RestrictExport.Describe()
	case in.OriginationPort != nil:
		return in.OriginationPort.Describe()
	}
	return in.Type
}

// Applied reports whether the intent changes the object: its action is deny
// or warn. A dry-run intent is recorded, not applied.
func (in Intent) Applied() bool { return in.Action != config.ActionDryRun }

// Apply applies every intent to obj in place. The route intents of a
// VirtualService are applied together, after the destination ports are set:
// each names its route by its index in the object as submitted.
func Apply(obj client.Object, intents []Intent) error {
	var routes []*RouteViaGateway
	for _, in := range intents {
		switch {
		case in.OriginationPort != nil:
			vs, ok := obj.(*networkingv1.VirtualService)
			if !ok {
				return fmt.Errorf("intent %s does not apply to a %T", TypeOriginationPort, obj)
			}
			if err := in.OriginationPort.apply(vs); err != nil {
				return err
			}
		case in.RouteViaGateway != nil:
			routes = append(routes, in.RouteViaGateway)
		case in.OriginateTLS != nil:
			dr, ok := obj.(*networkingv1.DestinationRule)
			if !ok {
				return fmt.Errorf("intent %s does not apply to a %T", TypeOriginateTLS, obj)
			}
			if err := in.OriginateTLS.apply(dr); err != nil {
				return err
			}
		case in.RestrictExport != nil:
			se, ok := obj.(*networkingv1.ServiceEntry)
			if !ok {
				return fmt.Errorf("intent %s does not apply to a %T", TypeRestrictExport, obj)
			}
			if err := in.RestrictExport.apply(se); err != nil {
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
		return fmt.Errorf("intent %s does not apply to a %T", TypeRouteViaGateway, obj)
	}
	return routeViaGateway(vs, routes)
}
