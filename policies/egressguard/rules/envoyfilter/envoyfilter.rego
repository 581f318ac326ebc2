# EnvoyFilter rules: a EnvoyFilter is the platform's to write.
package egressguard.rules.envoyfilter

import data.egressguard.lib

# EGR402: a EnvoyFilter written outside the platform's namespaces by someone not of
# the platform.
deny contains {
	"code": "EGR402",
	"field": "spec",
	"message": sprintf("spec: an EnvoyFilter patches the proxies' Envoy configuration directly and can route traffic around the egress gateway; only %s may write one", [lib.platform_owners]),
} if {
	input.kind.kind == "EnvoyFilter"
	not lib.platform_request
}
