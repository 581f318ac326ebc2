package mutators

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-guard/egress-guard/webhook/config"
)

const gwHost = "istio-egressgateway.istio-system.svc.cluster.local"

func vs(spec *networking.VirtualService) *networkingv1.VirtualService {
	obj := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "v", Namespace: "default"}}
	proto.Merge(&obj.Spec, spec)
	return obj
}

func route(section string, gwPort uint32, targets ...uint32) Intent {
	return Intent{Type: TypeRouteViaGateway, RouteViaGateway: &RouteViaGateway{Section: section, GatewayHost: gwHost, Gateway: "istio-system/egress-gateway", GatewayPort: gwPort, TargetPorts: targets}}
}

func TestRouteViaGatewayHTTPWithoutMatch(t *testing.T) {
	obj := vs(&networking.VirtualService{
		Hosts: []string{"a.com"},
		Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: "a.com"}, Weight: 70, Headers: headers("x-to", "a")},
				{Destination: &networking.Destination{Host: "b.com", Port: &networking.PortSelector{Number: 8080}}, Weight: 30, Headers: headers("x-to", "b")},
			},
		}},
	})
	if err := Apply(obj, []Intent{route("http", 80, 443, 0)}); err != nil {
		t.Fatal(err)
	}
	s := &obj.Spec
	if got := strings.Join(s.Gateways, ","); got != "mesh,istio-system/egress-gateway" {
		t.Errorf("gateways %q", got)
	}
	if len(s.Http) != 2 {
		t.Fatalf("want two legs, got %d", len(s.Http))
	}
	mesh, gw := s.Http[0], s.Http[1]
	if mesh.Match[0].Gateways[0] != "mesh" || len(mesh.Route) != 1 || mesh.Route[0].Destination.Host != gwHost || mesh.Route[0].Destination.Port.Number != 80 {
		t.Errorf("mesh leg: %v", mesh)
	}
	if gw.Match[0].Gateways[0] != "istio-system/egress-gateway" || gw.Match[0].Port != 80 {
		t.Errorf("gateway leg match: %v", gw.Match)
	}
	if gw.Route[0].Destination.Port.Number != 443 || gw.Route[0].Weight != 70 {
		t.Errorf("first destination goes to the target port with its weight: %v", gw.Route[0])
	}
	if gw.Route[1].Destination.Port.Number != 8080 || gw.Route[1].Weight != 30 {
		t.Errorf("target port 0 keeps the destination's port: %v", gw.Route[1])
	}
	// Several destinations: the gateway chooses, so each keeps its header
	// operations there, and the mesh leg has none.
	if mesh.Route[0].Headers != nil {
		t.Errorf("mesh leg destination headers: %v", mesh.Route[0].Headers)
	}
	for i, want := range []string{"a", "b"} {
		if got := gw.Route[i].GetHeaders().GetRequest().GetSet()["x-to"]; got != want {
			t.Errorf("gateway leg destination %d: header x-to %q, want %q", i, got, want)
		}
	}
}

func headers(name, value string) *networking.Headers {
	return &networking.Headers{Request: &networking.Headers_HeaderOperations{Set: map[string]string{name: value}}}
}

// One destination: its header operations stay with the sidecar, on the mesh
// leg.
func TestRouteViaGatewayOneDestinationHeaders(t *testing.T) {
	obj := vs(&networking.VirtualService{
		Hosts: []string{"a.com"},
		Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "a.com"}, Headers: headers("x-to", "a")}},
		}},
	})
	if err := Apply(obj, []Intent{route("http", 80, 443)}); err != nil {
		t.Fatal(err)
	}
	mesh, gw := obj.Spec.Http[0], obj.Spec.Http[1]
	if got := mesh.Route[0].GetHeaders().GetRequest().GetSet()["x-to"]; got != "a" {
		t.Errorf("mesh leg: header x-to %q", got)
	}
	if gw.Route[0].Headers != nil {
		t.Errorf("gateway leg: headers applied twice: %v", gw.Route[0].Headers)
	}
}

func TestRouteViaGatewayKeepsOtherRoutesAndOrder(t *testing.T) {
	internal := &networking.HTTPRoute{Name: "internal", Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}}}}
	obj := vs(&networking.VirtualService{
		Hosts:    []string{"a.com"},
		Gateways: []string{"mesh", "egress-gateway"},
		Http: []*networking.HTTPRoute{
			internal,
			{Name: "ext", Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "a.com"}}}},
		},
	})
	in := route("http", 80)
	in.Index = 1
	in.Gateway = "default/egress-gateway"
	if err := Apply(obj, []Intent{in}); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, r := range obj.Spec.Http {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "internal,ext,ext-egress" {
		t.Errorf("routes %v", names)
	}
	if !proto.Equal(obj.Spec.Http[0], internal) {
		t.Errorf("untouched route changed: %v", obj.Spec.Http[0])
	}
	if strings.Join(obj.Spec.Gateways, ",") != "mesh,egress-gateway" {
		t.Errorf("a gateway already bound by its short name is not added again: %v", obj.Spec.Gateways)
	}
}

func TestRouteViaGatewayTLSAndTCP(t *testing.T) {
	obj := vs(&networking.VirtualService{
		Hosts: []string{"istio.io"},
		Tls: []*networking.TLSRoute{{
			Match: []*networking.TLSMatchAttributes{{Port: 443, SniHosts: []string{"istio.io"}, SourceLabels: map[string]string{"app": "x"}}},
			Route: []*networking.RouteDestination{{Destination: &networking.Destination{Host: "istio.io", Port: &networking.PortSelector{Number: 443}}}},
		}},
		Tcp: []*networking.TCPRoute{{
			Match: []*networking.L4MatchAttributes{{Port: 3306}},
			Route: []*networking.RouteDestination{{Destination: &networking.Destination{Host: "db.example", Port: &networking.PortSelector{Number: 13306}}}},
		}},
	})
	tcp := route("tcp", 15443, 0)
	tcp.GatewaySubset = "mysql"
	if err := Apply(obj, []Intent{route("tls", 443, 0), tcp}); err != nil {
		t.Fatal(err)
	}
	tls := obj.Spec.Tls
	if len(tls) != 2 || tls[0].Match[0].SourceLabels["app"] != "x" || tls[1].Match[0].SourceLabels != nil {
		t.Errorf("tls legs: source labels stay on the mesh leg only: %v", tls)
	}
	if tls[1].Match[0].SniHosts[0] != "istio.io" || tls[1].Match[0].Port != 443 || tls[1].Route[0].Destination.Port.Number != 443 {
		t.Errorf("tls gateway leg: %v", tls[1])
	}
	tcpLegs := obj.Spec.Tcp
	if len(tcpLegs) != 2 || tcpLegs[0].Match[0].Port != 3306 || tcpLegs[0].Route[0].Destination.Subset != "mysql" || tcpLegs[0].Route[0].Destination.Port.Number != 15443 {
		t.Errorf("tcp mesh leg: %v", tcpLegs[0])
	}
	if tcpLegs[1].Match[0].Port != 15443 || tcpLegs[1].Route[0].Destination.Port.Number != 13306 {
		t.Errorf("tcp gateway leg: %v", tcpLegs[1])
	}
}

func TestRouteViaGatewayErrors(t *testing.T) {
	obj := vs(&networking.VirtualService{Hosts: []string{"a.com"}})
	in := route("http", 80)
	in.Index = 3
	if err := Apply(obj, []Intent{in}); err == nil || !strings.Contains(err.Error(), "spec.http[3]") {
		t.Errorf("a missing route is an error naming it: %v", err)
	}
	if err := Apply(obj, []Intent{{Type: "rewrite_everything"}}); err == nil || !strings.Contains(err.Error(), "rewrite_everything") {
		t.Errorf("an unknown intent is an error naming it: %v", err)
	}
	if err := Apply(&networkingv1.DestinationRule{}, []Intent{route("http", 80)}); err == nil {
		t.Error("a route intent on a DestinationRule is an error")
	}
	if err := Apply(obj, []Intent{{Type: TypeRouteViaGateway, RouteViaGateway: &RouteViaGateway{Section: "http"}}}); err == nil {
		t.Error("an intent without a gateway is an error")
	}
}

func dr(tp *networking.TrafficPolicy) *networkingv1.DestinationRule {
	return &networkingv1.DestinationRule{Spec: networking.DestinationRule{Host: "test.com", TrafficPolicy: tp}}
}

var mutual = Intent{Type: TypeOriginateTLS, OriginateTLS: &OriginateTLS{Port: 443, Mode: "MUTUAL", CredentialName: "test.client", SNI: "test.com"}}

func TestOriginateTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *networking.TrafficPolicy
		want *networking.ClientTLSSettings
	}{
		{"missing", nil, &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL, CredentialName: "test.client", Sni: "test.com"}},
		{"weaker replaces credential", &networking.TrafficPolicy{PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
			{Port: &networking.PortSelector{Number: 443}, Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE, CredentialName: "ca-only", Sni: "x.test.com"}},
		}}, &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL, CredentialName: "test.client", Sni: "test.com"}},
		{"equal fills only what is missing", &networking.TrafficPolicy{PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
			{Port: &networking.PortSelector{Number: 443}, Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL, Sni: "own.sni"}},
		}}, &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL, CredentialName: "test.client", Sni: "own.sni"}},
		{"never downgrades", &networking.TrafficPolicy{PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
			{Port: &networking.PortSelector{Number: 443}, Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}},
		}}, &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL, CredentialName: "test.client", Sni: "test.com"}},
		{"starts from the traffic policy's tls", &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{
			Mode: networking.ClientTLSSettings_SIMPLE, InsecureSkipVerify: wrapperspb.Bool(true), SubjectAltNames: []string{"san"},
		}}, &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL, CredentialName: "test.client", Sni: "test.com", InsecureSkipVerify: wrapperspb.Bool(true), SubjectAltNames: []string{"san"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := dr(tc.in)
			if err := Apply(obj, []Intent{mutual}); err != nil {
				t.Fatal(err)
			}
			var got *networking.ClientTLSSettings
			for _, p := range obj.Spec.TrafficPolicy.PortLevelSettings {
				if p.Port.Number == 443 {
					got = p.Tls
				}
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			again := proto.Clone(&obj.Spec).(*networking.DestinationRule)
			if err := Apply(obj, []Intent{mutual}); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(again, &obj.Spec) {
				t.Errorf("a second pass changed the object")
			}
		})
	}
	// A new port-level setting replaces the traffic policy for its port:
	// the other settings are carried over.
	lb := &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_ROUND_ROBIN}}
	obj := dr(&networking.TrafficPolicy{LoadBalancer: lb})
	if err := Apply(obj, []Intent{mutual}); err != nil {
		t.Fatal(err)
	}
	if pls := obj.Spec.TrafficPolicy.PortLevelSettings[0]; !proto.Equal(pls.LoadBalancer, lb) || pls.ConnectionPool != nil {
		t.Errorf("port-level setting: %v", pls)
	}
	if err := Apply(dr(nil), []Intent{{Type: TypeOriginateTLS, OriginateTLS: &OriginateTLS{Port: 443, Mode: "STRONG"}}}); err == nil {
		t.Error("an unknown mode is an error")
	}
}

// An intent's JSON is the policy's intent as written: the mutation's fields
// beside type, code and action. The engine orders intents by it.
func TestIntentJSON(t *testing.T) {
	in := route("tls", 443, 0)
	in.Code, in.Action = "EGR201", config.ActionWarn
	got, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"route_via_gateway","code":"EGR201","action":"warn","section":"tls","gatewayHost":"` + gwHost + `","gateway":"istio-system/egress-gateway","gatewayPort":443,"targetPorts":[0]}`
	if string(got) != want {
		t.Errorf("route intent JSON\n got %s\nwant %s", got, want)
	}
	if got, _ := json.Marshal(mutual); string(got) != `{"type":"originate_tls","port":443,"mode":"MUTUAL","credentialName":"test.client","sni":"test.com"}` {
		t.Errorf("origination intent JSON %s", got)
	}
}

func TestDescribe(t *testing.T) {
	in := route("http", 80)
	in.Index = 2
	for _, tc := range []struct {
		in   Intent
		want string
	}{
		{in, "spec.http[2]: routed through the egress gateway " + gwHost + ":80 (gateway istio-system/egress-gateway)"},
		{mutual, `spec.trafficPolicy.portLevelSettings: port 443 originates MUTUAL tls (credentialName "test.client", sni "test.com")`},
		{Intent{Type: "rewrite_everything"}, "rewrite_everything"},
	} {
		if got := tc.in.Describe(); got != tc.want {
			t.Errorf("Describe() = %q, want %q", got, tc.want)
		}
	}
	dry := mutual
	dry.Action = config.ActionDryRun
	if !mutual.Applied() || dry.Applied() {
		t.Error("Applied: deny and warn intents are applied, dry-run ones are not")
	}
}

var restrict = Intent{Type: TypeRestrictExport, RestrictExport: &RestrictExport{ExportTo: []string{".", "team-b"}}}

func TestRestrictExport(t *testing.T) {
	se := &networkingv1.ServiceEntry{Spec: networking.ServiceEntry{Hosts: []string{"api.partner.example"}, ExportTo: []string{"*"}}}
	for range 2 {
		// A second pass leaves the object as the first did.
		if err := Apply(se, []Intent{restrict}); err != nil {
			t.Fatal(err)
		}
		if got := se.Spec.ExportTo; !slices.Equal(got, []string{".", "team-b"}) {
			t.Errorf("exportTo %q", got)
		}
	}
	// The intent's list is not shared with the object.
	se.Spec.ExportTo[0] = "changed"
	if restrict.RestrictExport.ExportTo[0] != "." {
		t.Error("the object shares the intent's list")
	}
	for _, bad := range [][]string{nil, {"*"}, {".", "*"}} {
		if err := Apply(se, []Intent{{Type: TypeRestrictExport, RestrictExport: &RestrictExport{ExportTo: bad}}}); err == nil {
			t.Errorf("exportTo %q: no error", bad)
		}
	}
	if err := Apply(dr(nil), []Intent{restrict}); err == nil {
		t.Error("a DestinationRule: no error")
	}
	if got, want := restrict.Describe(), `spec.exportTo: exported to its own namespace, "team-b" only`; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	if got, _ := json.Marshal(restrict); string(got) != `{"type":"restrict_export","exportTo":[".","team-b"]}` {
		t.Errorf("intent JSON %s", got)
	}
}

// A gateway leg's destination goes to the origination port, before the
// route intents split other routes by their indexes as submitted.
func TestOriginationPort(t *testing.T) {
	vs := &networkingv1.VirtualService{Spec: networking.VirtualService{
		Hosts: []string{"test.com"},
		Http: []*networking.HTTPRoute{
			{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "test.com", Port: &networking.PortSelector{Number: 80}}}}},
			{Match: []*networking.HTTPMatchRequest{{Gateways: []string{"istio-system/egress-gateway"}}}, Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "test.com", Port: &networking.PortSelector{Number: 80}}}}},
		},
		Tcp: []*networking.TCPRoute{{Route: []*networking.RouteDestination{{Destination: &networking.Destination{Host: "db.example"}}}}},
	}}
	port := Intent{Type: TypeOriginationPort, OriginationPort: &OriginationPort{Leg: LegRef{Section: "http", Index: 1, Route: 0}, To: 443}}
	tcp := Intent{Type: TypeOriginationPort, OriginationPort: &OriginationPort{Leg: LegRef{Section: "tcp", Index: 0, Route: 0}, To: 13306}}
	route := Intent{Type: TypeRouteViaGateway, RouteViaGateway: &RouteViaGateway{Section: "http", Index: 0, GatewayHost: "gw.istio-system.svc.cluster.local", Gateway: "istio-system/egress-gateway", GatewayPort: 80}}
	if err := Apply(vs, []Intent{route, port, tcp}); err != nil {
		t.Fatal(err)
	}
	// http[0] became two legs: the leg that was http[1] is now http[2].
	if got := vs.Spec.Http[2].Route[0].Destination.Port.GetNumber(); got != 443 {
		t.Errorf("the gateway leg's port %d, want 443", got)
	}
	if got := vs.Spec.Http[1].Route[0].Destination.Port.GetNumber(); got != 80 {
		t.Errorf("the split route's gateway leg %d, want 80 (its own)", got)
	}
	if got := vs.Spec.Tcp[0].Route[0].Destination.Port.GetNumber(); got != 13306 {
		t.Errorf("the TCP leg's port %d, want 13306", got)
	}
	for _, bad := range []*OriginationPort{
		{Leg: LegRef{Section: "tls"}, To: 443},
		{Leg: LegRef{Section: "http", Index: 9}, To: 443},
		{Leg: LegRef{Section: "http", Route: 3}, To: 443},
		{Leg: LegRef{Section: "http"}, To: 0},
		{Leg: LegRef{Section: "http"}, To: 70000},
	} {
		if err := Apply(vs, []Intent{{Type: TypeOriginationPort, OriginationPort: bad}}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if err := Apply(dr(nil), []Intent{port}); err == nil {
		t.Error("a DestinationRule: no error")
	}
	if got, want := port.Describe(), "spec.http[1].route[0].destination.port.number: sent to the origination port 443"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	if got, _ := json.Marshal(port); string(got) != `{"type":"origination_port","leg":{"section":"http","index":1,"route":0},"to":443}` {
		t.Errorf("intent JSON %s", got)
	}
	if got, _ := json.Marshal(route); !strings.Contains(string(got), `"section":"http","gatewayHost"`) {
		t.Errorf("a route intent's JSON lost its fields: %s", got)
	}
}
