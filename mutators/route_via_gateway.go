package mutators

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

const mesh = "mesh"

// RouteViaGateway sends a direct mesh route of a VirtualService,
// spec.<Section>[<Index>], through the egress gateway: the mesh leg goes to
// the gateway's Service (GatewayHost, GatewayPort, GatewaySubset), the
// gateway leg, bound to the Gateway resource (namespace/name), on to the
// route's destinations, each on its target port (0: the destination's own
// port).
type RouteViaGateway struct {
	// Section is the route list: http, tls or tcp.
	Section       string   `json:"section,omitempty"`
	Index         int      `json:"index,omitempty"`
	GatewayHost   string   `json:"gatewayHost,omitempty"`
	Gateway       string   `json:"gateway,omitempty"`
	GatewayPort   uint32   `json:"gatewayPort,omitempty"`
	GatewaySubset string   `json:"gatewaySubset,omitempty"`
	TargetPorts   []uint32 `json:"targetPorts,omitempty"`
	// ListenerPort is the port of the Gateway's server the gateway leg
	// matches on, where it is not GatewayPort (a Service port the gateway
	// listens on under another number: 443 to 8443); 0: GatewayPort.
	ListenerPort uint32 `json:"listenerPort,omitempty"`
}

// listener is the port the gateway leg matches on.
func (in *RouteViaGateway) listener() uint32 {
	if in.ListenerPort != 0 {
		return in.ListenerPort
	}
	return in.GatewayPort
}

// Describe says in one line what the mutation changes.
func (in *RouteViaGateway) Describe() string {
	return fmt.Sprintf("spec.%s[%d]: routed through the egress gateway %s:%d (gateway %s)", in.Section, in.Index, in.GatewayHost, in.GatewayPort, in.Gateway)
}

// routeViaGateway splits each named direct mesh route into two legs: a mesh
// leg, matched on the mesh only, that sends the traffic to the egress gateway
// Service, and a gateway leg, matched on the gateway only, that sends it on to
// the external hosts. The gateway leg follows the mesh leg, and the Gateway
// resource is added to the object's gateways.
func routeViaGateway(vs *networkingv1.VirtualService, intents []*RouteViaGateway) error {
	bySection := map[string]map[int]*RouteViaGateway{}
	gateways := map[string]bool{}
	for _, in := range intents {
		if in.GatewayHost == "" || in.Gateway == "" || in.GatewayPort == 0 {
			return fmt.Errorf("intent %s for spec.%s[%d] lacks gatewayHost, gateway or gatewayPort", TypeRouteViaGateway, in.Section, in.Index)
		}
		if bySection[in.Section] == nil {
			bySection[in.Section] = map[int]*RouteViaGateway{}
		}
		bySection[in.Section][in.Index] = in
		gateways[in.Gateway] = true
	}
	spec := &vs.Spec
	for section, byIndex := range bySection {
		var err error
		switch section {
		case "http":
			spec.Http, err = split(spec.Http, byIndex, section, httpLegs)
		case "tls":
			spec.Tls, err = split(spec.Tls, byIndex, section, tlsLegs)
		case "tcp":
			spec.Tcp, err = split(spec.Tcp, byIndex, section, tcpLegs)
		default:
			err = fmt.Errorf("intent %s names unknown route section %q", TypeRouteViaGateway, section)
		}
		if err != nil {
			return err
		}
	}
	if len(spec.Gateways) == 0 {
		spec.Gateways = []string{mesh}
	}
	for _, gw := range sortedKeys(gateways) {
		if !boundTo(spec.Gateways, gw, vs.Namespace) {
			spec.Gateways = append(spec.Gateways, gw)
		}
	}
	return nil
}

// split replaces each route named by an intent with its two legs.
func split[R proto.Message](routes []R, byIndex map[int]*RouteViaGateway, section string, legs func(R, *RouteViaGateway) (R, R, error)) ([]R, error) {
	for i := range byIndex {
		if i < 0 || i >= len(routes) {
			return nil, fmt.Errorf("intent %s names spec.%s[%d], which does not exist", TypeRouteViaGateway, section, i)
		}
	}
	out := make([]R, 0, len(routes)+len(byIndex))
	for i, r := range routes {
		in, ok := byIndex[i]
		if !ok {
			out = append(out, r)
			continue
		}
		meshLeg, gatewayLeg, err := legs(r, in)
		if err != nil {
			return nil, fmt.Errorf("spec.%s[%d]: %w", section, i, err)
		}
		out = append(out, meshLeg, gatewayLeg)
	}
	return out, nil
}

func gatewayDestination(in *RouteViaGateway) *networking.Destination {
	return &networking.Destination{
		Host:   in.GatewayHost,
		Subset: in.GatewaySubset,
		Port:   &networking.PortSelector{Number: in.GatewayPort},
	}
}

// upstream is the gateway leg's destination j: the original one on the
// intent's target port (0 keeps the original port).
func upstream(d *networking.Destination, in *RouteViaGateway, j int) (*networking.Destination, error) {
	if d == nil {
		return nil, fmt.Errorf("route[%d] has no destination", j)
	}
	if len(in.TargetPorts) != 0 && len(in.TargetPorts) <= j {
		return nil, fmt.Errorf("intent has %d target ports for route[%d]", len(in.TargetPorts), j)
	}
	out := proto.Clone(d).(*networking.Destination)
	if len(in.TargetPorts) > 0 && in.TargetPorts[j] != 0 {
		out.Port = &networking.PortSelector{Number: in.TargetPorts[j]}
	}
	return out, nil
}

func httpLegs(r *networking.HTTPRoute, in *RouteViaGateway) (*networking.HTTPRoute, *networking.HTTPRoute, error) {
	meshLeg := proto.Clone(r).(*networking.HTTPRoute)
	meshLeg.Match = nil
	for _, m := range r.Match {
		m = proto.Clone(m).(*networking.HTTPMatchRequest)
		m.Gateways = []string{mesh}
		meshLeg.Match = append(meshLeg.Match, m)
	}
	if len(meshLeg.Match) == 0 {
		meshLeg.Match = []*networking.HTTPMatchRequest{{Gateways: []string{mesh}}}
	}
	// A destination's header operations follow the choice of destination:
	// with one destination, on the mesh leg; with several, the gateway picks
	// one, and each keeps its own on the gateway leg.
	meshDest := &networking.HTTPRouteDestination{Destination: gatewayDestination(in)}
	if len(r.Route) == 1 {
		meshDest.Headers = r.Route[0].Headers
	}
	meshLeg.Route = []*networking.HTTPRouteDestination{meshDest}

	gatewayLeg := &networking.HTTPRoute{
		Name:    legName(r.Name),
		Timeout: r.Timeout,
		Retries: r.Retries,
	}
	for _, m := range r.Match {
		m = proto.Clone(m).(*networking.HTTPMatchRequest)
		m.Gateways = []string{in.Gateway}
		m.Port = in.listener()
		// At the gateway the source is the gateway itself.
		m.SourceLabels, m.SourceNamespace = nil, ""
		gatewayLeg.Match = append(gatewayLeg.Match, m)
	}
	if len(gatewayLeg.Match) == 0 {
		gatewayLeg.Match = []*networking.HTTPMatchRequest{{Gateways: []string{in.Gateway}, Port: in.listener()}}
	}
	for j, d := range r.Route {
		up, err := upstream(d.GetDestination(), in, j)
		if err != nil {
			return nil, nil, err
		}
		gd := &networking.HTTPRouteDestination{Destination: up, Weight: d.Weight}
		if len(r.Route) > 1 {
			gd.Headers = d.Headers
		}
		gatewayLeg.Route = append(gatewayLeg.Route, gd)
	}
	return meshLeg, gatewayLeg, nil
}

func tlsLegs(r *networking.TLSRoute, in *RouteViaGateway) (*networking.TLSRoute, *networking.TLSRoute, error) {
	meshLeg := &networking.TLSRoute{}
	gatewayLeg := &networking.TLSRoute{}
	for _, m := range r.Match {
		mm := proto.Clone(m).(*networking.TLSMatchAttributes)
		mm.Gateways = []string{mesh}
		meshLeg.Match = append(meshLeg.Match, mm)
		gm := &networking.TLSMatchAttributes{SniHosts: m.SniHosts, Port: in.listener(), Gateways: []string{in.Gateway}}
		gatewayLeg.Match = append(gatewayLeg.Match, gm)
	}
	if len(r.Match) == 0 {
		return nil, nil, fmt.Errorf("a tls route needs a match with sniHosts")
	}
	meshLeg.Route = []*networking.RouteDestination{{Destination: gatewayDestination(in)}}
	var err error
	gatewayLeg.Route, err = upstreamRoutes(r.Route, in)
	return meshLeg, gatewayLeg, err
}

func tcpLegs(r *networking.TCPRoute, in *RouteViaGateway) (*networking.TCPRoute, *networking.TCPRoute, error) {
	meshLeg := &networking.TCPRoute{}
	for _, m := range r.Match {
		mm := proto.Clone(m).(*networking.L4MatchAttributes)
		mm.Gateways = []string{mesh}
		meshLeg.Match = append(meshLeg.Match, mm)
	}
	if len(meshLeg.Match) == 0 {
		meshLeg.Match = []*networking.L4MatchAttributes{{Gateways: []string{mesh}}}
	}
	meshLeg.Route = []*networking.RouteDestination{{Destination: gatewayDestination(in)}}
	gatewayLeg := &networking.TCPRoute{
		Match: []*networking.L4MatchAttributes{{Gateways: []string{in.Gateway}, Port: in.listener()}},
	}
	var err error
	gatewayLeg.Route, err = upstreamRoutes(r.Route, in)
	return meshLeg, gatewayLeg, err
}

// upstreamRoutes are a TLS or TCP gateway leg's destinations.
func upstreamRoutes(routes []*networking.RouteDestination, in *RouteViaGateway) ([]*networking.RouteDestination, error) {
	out := make([]*networking.RouteDestination, 0, len(routes))
	for j, d := range routes {
		up, err := upstream(d.GetDestination(), in, j)
		if err != nil {
			return nil, err
		}
		out = append(out, &networking.RouteDestination{Destination: up, Weight: d.Weight})
	}
	return out, nil
}

func legName(name string) string {
	if name == "" {
		return ""
	}
	return name + "-egress"
}

// boundTo reports whether gateways (as written in namespace ns) already
// include gw (namespace/name).
func boundTo(gateways []string, gw, ns string) bool {
	return slices.ContainsFunc(gateways, func(g string) bool {
		if !strings.Contains(g, "/") && g != mesh {
			g = ns + "/" + g
		}
		return g == gw
	})
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
