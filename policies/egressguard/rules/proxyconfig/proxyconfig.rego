# ProxyConfig rules: a ProxyConfig is the platform's to write.
package egressguard.rules.proxyconfig

import data.egressguard.lib

# EGR404: a ProxyConfig written outside the platform's namespaces by someone not of
# the platform.
deny contains {
	"code": "EGR404",
	"field": "spec",
	"message": sprintf("spec: a ProxyConfig changes how the proxies run (image, environment, concurrency); only %s may write one", [lib.platform_owners]),
} if {
	input.kind.kind == "ProxyConfig"
	not lib.platform_request
}
