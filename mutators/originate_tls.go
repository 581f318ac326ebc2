package mutators

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// strength orders TLS modes; a mutator never lowers it.
var strength = map[networking.ClientTLSSettings_TLSmode]int{
	networking.ClientTLSSettings_DISABLE:      0,
	networking.ClientTLSSettings_SIMPLE:       1,
	networking.ClientTLSSettings_MUTUAL:       2,
	networking.ClientTLSSettings_ISTIO_MUTUAL: 2,
}

// OriginateTLS makes the gateway originate TLS to a DestinationRule's host
// on one port: the mode, the client credential (a secret in the gateway's
// namespace) and the SNI.
type OriginateTLS struct {
	Port uint32 `json:"port,omitempty"`
	// Mode is a ClientTLSSettings mode by name: SIMPLE, MUTUAL, ISTIO_MUTUAL.
	Mode           string `json:"mode,omitempty"`
	CredentialName string `json:"credentialName,omitempty"`
	SNI            string `json:"sni,omitempty"`
}

// Describe says in one line what the mutation changes.
func (in *OriginateTLS) Describe() string {
	return fmt.Sprintf("spec.trafficPolicy.portLevelSettings: port %d originates %s tls (credentialName %q, sni %q)", in.Port, in.Mode, in.CredentialName, in.SNI)
}

// apply sets the port-level TLS the gateway originates to the host: mode,
// credential and SNI when the mode is missing or weaker; only the missing
// credential or SNI when the mode is already as strong.
func (in *OriginateTLS) apply(dr *networkingv1.DestinationRule) error {
	modeValue, ok := networking.ClientTLSSettings_TLSmode_value[in.Mode]
	if !ok || in.Port == 0 {
		return fmt.Errorf("intent %s needs a tls mode and port, got mode %q port %d", TypeOriginateTLS, in.Mode, in.Port)
	}
	mode := networking.ClientTLSSettings_TLSmode(modeValue)
	if dr.Spec.TrafficPolicy == nil {
		dr.Spec.TrafficPolicy = &networking.TrafficPolicy{}
	}
	tp := dr.Spec.TrafficPolicy
	var pls *networking.TrafficPolicy_PortTrafficPolicy
	for _, p := range tp.PortLevelSettings {
		if p.GetPort().GetNumber() == in.Port {
			pls = p
			break
		}
	}
	if pls == nil {
		// A port-level setting replaces the traffic policy for its port
		// entirely: carry the traffic policy's settings over, so that only
		// the TLS changes.
		pls = &networking.TrafficPolicy_PortTrafficPolicy{
			Port:             &networking.PortSelector{Number: in.Port},
			LoadBalancer:     clone(tp.LoadBalancer),
			ConnectionPool:   clone(tp.ConnectionPool),
			OutlierDetection: clone(tp.OutlierDetection),
			Tls:              clone(tp.Tls),
		}
		tp.PortLevelSettings = append(tp.PortLevelSettings, pls)
	}
	if pls.Tls == nil {
		pls.Tls = &networking.ClientTLSSettings{}
	}
	tls := pls.Tls
	switch {
	case strength[tls.Mode] < strength[mode]:
		tls.Mode = mode
		tls.CredentialName = in.CredentialName
		if in.SNI != "" {
			tls.Sni = in.SNI
		}
	case strength[tls.Mode] == strength[mode]:
		if tls.CredentialName == "" {
			tls.CredentialName = in.CredentialName
		}
		if tls.Sni == "" {
			tls.Sni = in.SNI
		}
	}
	return nil
}

// clone copies a message, keeping nil as nil.
func clone[M interface {
	proto.Message
	comparable
}](m M) M {
	var zero M
	if m == zero {
		return zero
	}
	return proto.Clone(m).(M)
}
