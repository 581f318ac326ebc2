# Sidecar rules: the outbound traffic policy that lets sidecars reach any host
# is the platform's to set.
package egressguard.rules.sidecar

import data.egressguard.lib

_sidecar := input.object if input.kind.kind == "Sidecar"

# EGR401: an outbound traffic policy other than REGISTRY_ONLY (ALLOW_ANY):
# the sidecars it selects reach hosts no ServiceEntry registers, directly.
deny contains {
	"code": "EGR401",
	"field": "spec.outboundTrafficPolicy.mode",
	"message": sprintf("spec.outboundTrafficPolicy.mode: %q lets the sidecars reach any host directly, around the egress gateway; only %s may set it", [mode, lib.platform_owners]),
} if {
	mode := _sidecar.spec.outboundTrafficPolicy.mode
	mode != "REGISTRY_ONLY"
	not lib.platform_request
}

# EGR405: mesh-wide configuration in the root namespace (lib).
deny contains v if {
	v := lib.root_namespace_violation
}
