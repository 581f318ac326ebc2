# WasmPlugin rules: a WasmPlugin is the platform's to write.
package egressguard.rules.wasmplugin

import data.egressguard.lib

# EGR403: a WasmPlugin written outside the platform's namespaces by someone not of
# the platform.
deny contains {
	"code": "EGR403",
	"field": "spec",
	"message": sprintf("spec: a WasmPlugin runs code inside the proxies and can send traffic anywhere; only %s may write one", [lib.platform_owners]),
} if {
	input.kind.kind == "WasmPlugin"
	not lib.platform_request
}
