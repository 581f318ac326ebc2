# ServiceEntry rules: an entry that registers an external host is allowed only
# for hosts, ports and endpoints the platform allows in the object's namespace.
package egressguard.rules.serviceentry

import data.egressguard.lib

_se := input.object if input.kind.kind == "ServiceEntry"

_ns := input.namespace

_external if object.get(_se.spec, "location", "MESH_EXTERNAL") == "MESH_EXTERNAL"

# EGR101: a MESH_EXTERNAL host not allowed for the namespace.
deny contains {
	"code": "EGR101",
	"field": sprintf("spec.hosts[%d]", [i]),
	"message": sprintf("spec.hosts[%d]: external host %q is not allowed for namespace %q", [i, host, _ns]),
} if {
	_external
	some i, host in _se.spec.hosts
	not lib.allowed_host(host, _ns)
}

# EGR102: a port of an allowed MESH_EXTERNAL host that the allow list does not name.
deny contains {
	"code": "EGR102",
	"field": sprintf("spec.ports[%d].number", [i]),
	"message": sprintf("spec.ports[%d].number: port %d is not allowed for host %q in namespace %q", [i, p.number, host, _ns]),
} if {
	_external
	some host in _se.spec.hosts
	lib.allowed_host(host, _ns)
	some i, p in object.get(_se.spec, "ports", [])
	not lib.allowed_port(host, p.number, _ns)
}

# EGR103: an endpoint of an allowed MESH_EXTERNAL host that the allow list does
# not name: the entry would send the host's traffic to another destination.
deny contains {
	"code": "EGR103",
	"field": sprintf("spec.endpoints[%d].address", [i]),
	"message": sprintf("spec.endpoints[%d].address: endpoint %q of external host %q is not allowed for namespace %q", [i, address, min(refused), _ns]),
} if {
	_external
	some i, endpoint in object.get(_se.spec, "endpoints", [])
	address := object.get(endpoint, "address", "")
	address != ""
	refused := {host |
		some host in _se.spec.hosts
		lib.allowed_host(host, _ns)
		not lib.endpoint_allowed(address, host, _ns)
	}
	count(refused) > 0
}

# EGR103: endpoints taken from the workloads a selector picks (WorkloadEntries,
# pods) cannot be checked against the allow list; Istio documents the field
# for MESH_INTERNAL entries only.
deny contains {
	"code": "EGR103",
	"field": "spec.workloadSelector",
	"message": sprintf("spec.workloadSelector: external host %q would take its endpoints from the workloads the selector picks, which the allow list cannot check; list them in spec.endpoints", [min(allowed)]),
} if {
	_external
	_se.spec.workloadSelector
	allowed := {host | some host in _se.spec.hosts; lib.allowed_host(host, _ns)}
	count(allowed) > 0
}
