package mutators

import (
	"fmt"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// Describe says in one line what an intent changes, for admission warnings.
func Describe(in engine.Intent) string {
	switch in.Type {
	case RouteViaGateway:
		return fmt.Sprintf("spec.%s[%d]: routed through the egress gateway %s:%d (gateway %s)", in.Section, in.Index, in.GatewayHost, in.GatewayPort, in.Gateway)
	case OriginateTLS:
		return fmt.Sprintf("spec.trafficPolicy.portLevelSettings: port %d originates %s tls (credentialName %q, sni %q)", in.Port, in.Mode, in.CredentialName, in.SNI)
	}
	return in.Type
}
