# ServiceEntry rules: an entry that registers an external host is allowed only
# for hosts, ports and endpoints the platform allows in the object's namespace,
# and no setting of it may let traffic leave around the egress gateway (an
# external host called internal, wildcards or ports that match any
# destination, the proxy resolving hosts itself, or an export to namespaces
# the host is not allowed in).
package egressguard.rules.serviceentry

import data.egressguard.lib

_se := input.object if input.kind.kind == "ServiceEntry"

_ns := input.namespace

_location := object.get(_se.spec, "location", "MESH_EXTERNAL")

_external if _location == "MESH_EXTERNAL"

# Istio's default resolution is NONE: the proxy forwards to the address the
# client dialled.
_resolution := object.get(_se.spec, "resolution", "NONE")

# _leaves: the entry's traffic may leave the cluster: it is MESH_EXTERNAL, or
# it names a host outside the cluster.
_leaves if _external

_leaves if {
	some host in _se.spec.hosts
	not lib.cluster_local(host)
}

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

# EGR104: MESH_INTERNAL for a host outside the cluster. The mesh then treats
# an external destination as one of its own services, and the external-host
# rules and routes no longer see it. With a workloadSelector the endpoints are
# the mesh's own workloads (WorkloadEntries of VMs), which is not egress.
deny contains {
	"code": "EGR104",
	"field": "spec.location",
	"message": sprintf("spec.location: MESH_INTERNAL for host %q, which is not a name of the cluster: its traffic would leave from the sidecar as if it stayed in the mesh; register it as MESH_EXTERNAL", [host]),
} if {
	_location == "MESH_INTERNAL"
	not _se.spec.workloadSelector
	some host in _se.spec.hosts
	not lib.cluster_local(host)
}

# EGR105: a wildcard host with resolution NONE. The proxy forwards whatever
# matches the wildcard to the address the client dialled; at the gateway that
# works only where the platform forwards the hosts by SNI (the allow entry's
# sniForwarding, scenario 002).
deny contains {
	"code": "EGR105",
	"field": sprintf("spec.hosts[%d]", [i]),
	"message": sprintf("spec.hosts[%d]: wildcard host %q with resolution NONE is forwarded to whatever address the client dialled; the platform allows that only for hosts it forwards by SNI at the egress gateway (allow entry with sniForwarding)", [i, host]),
} if {
	_external
	_resolution == "NONE"
	some i, host in _se.spec.hosts
	startswith(host, "*")
	lib.allowed_host(host, _ns)
	not lib.sni_forwarding(host, _ns)
}

# Ports the proxy matches by destination address and port alone (no SNI, no
# Host header): with resolution NONE and no addresses, such a port matches
# traffic to any IP address. An unset protocol is sniffed, and falls back to
# TCP.
_by_address_protocols := {"", "TCP", "MONGO", "MYSQL", "REDIS"}

# EGR106: resolution NONE, a TCP port and no spec.addresses: Istio documents
# that the entry then allows traffic to any IP address on the port.
deny contains {
	"code": "EGR106",
	"field": sprintf("spec.ports[%d]", [i]),
	"message": sprintf("spec.ports[%d]: port %d (%s) with resolution NONE and no spec.addresses matches traffic to any IP address on the port; give the host's addresses in spec.addresses, or use resolution DNS", [i, p.number, _protocol_label(p)]),
} if {
	_leaves
	_resolution == "NONE"
	count(object.get(_se.spec, "addresses", [])) == 0
	some i, p in object.get(_se.spec, "ports", [])
	upper(object.get(p, "protocol", "")) in _by_address_protocols
}

_protocol_label(p) := p.protocol if p.protocol

else := "no protocol"

# EGR107: an address range that matches every destination.
deny contains {
	"code": "EGR107",
	"field": sprintf("spec.addresses[%d]", [i]),
	"message": sprintf("spec.addresses[%d]: %q matches every destination address: the entry would take all traffic on its ports", [i, address]),
} if {
	_leaves
	some i, address in object.get(_se.spec, "addresses", [])
	endswith(address, "/0")
}

# EGR107: an address of an allowed external host outside the addresses its
# allow entries give: the entry would claim traffic to destinations the
# platform did not allow.
deny contains {
	"code": "EGR107",
	"field": sprintf("spec.addresses[%d]", [i]),
	"message": sprintf("spec.addresses[%d]: %q is not inside the addresses the allow list gives external host %q in namespace %q", [i, address, host, _ns]),
} if {
	_external
	some i, address in object.get(_se.spec, "addresses", [])
	not endswith(address, "/0")
	some host in _se.spec.hosts
	lib.allowed_host(host, _ns)
	not lib.address_allowed(address, host, _ns)
}

# EGR108: resolution DYNAMIC_DNS makes the proxy resolve the host of each
# request itself and connect to the answer: egress to any name the wildcard
# matches, decided at the proxy.
deny contains {
	"code": "EGR108",
	"field": "spec.resolution",
	"message": sprintf("spec.resolution: DYNAMIC_DNS makes the proxy resolve and reach any name %q matches by itself; use resolution DNS for each host, or NONE where the platform forwards by SNI at the gateway", [host]),
} if {
	_leaves
	_resolution == "DYNAMIC_DNS"
	some host in _se.spec.hosts
	not lib.cluster_local(host)
}

# Exports. A host the allow list gives only some namespaces must not be
# exported to others: an exported ServiceEntry lets their sidecars reach it.
# _export_ok: the namespaces every such host of the entry is allowed in.
_restricted_hosts contains host if {
	_external
	some host in _se.spec.hosts
	lib.allowed_host(host, _ns)
	lib.namespace_restricted(host)
}

_export_ok := intersection({lib.host_namespaces(host) | some host in _restricted_hosts}) if count(_restricted_hosts) > 0

_export_value_ok(v) if v in {".", "~", _ns}

_export_value_ok(v) if v in _export_ok

# _export_fixed: the export the entry may have, keeping what it may keep: "*"
# becomes the entry's own namespace and the others the hosts are allowed in; a
# namespace they are not allowed in is dropped.
_export_fixed contains v if {
	some v in _se.spec.exportTo
	_export_value_ok(v)
}

_export_fixed contains v if {
	"*" in _se.spec.exportTo
	some v in ({"."} | (_export_ok - {_ns}))
}

_export_bad contains [i, v] if {
	_export_ok
	some i, v in object.get(_se.spec, "exportTo", [])
	not _export_value_ok(v)
}

# EGR109: an export to namespaces a restricted host is not allowed in. Fixed
# by the restrict_export intent where some export remains; denied otherwise.
deny contains {
	"code": "EGR109",
	"field": sprintf("spec.exportTo[%d]", [i]),
	"message": sprintf("spec.exportTo[%d]: %q exports host %q beyond the namespaces the allow list gives it (%s)", [i, v, min(_restricted_hosts), concat(", ", sort(_export_ok))]),
} if {
	some [i, v] in _export_bad
}

intents contains {
	"type": "restrict_export",
	"code": "EGR109",
	"exportTo": sort(_export_fixed),
} if {
	count(_export_bad) > 0
	count(_export_fixed) > 0
}

# EGR110 (the audit, which knows the cluster's VirtualServices:
# data.inventory.virtualServicesByHost): an allowed external host that no
# VirtualService sends through the egress gateway. The entry lets the
# sidecars reach the host, and with no route to the gateway they do so
# directly. Admission does not judge it: the route is often written after the
# ServiceEntry.
deny contains {
	"code": "EGR110",
	"field": sprintf("spec.hosts[%d]", [i]),
	"message": sprintf("spec.hosts[%d]: no VirtualService routes the mesh's traffic for external host %q through the egress gateway: the sidecars reach it directly", [i, host]),
} if {
	_external
	routes := data.inventory.virtualServicesByHost
	some i, host in _se.spec.hosts
	lib.allowed_host(host, _ns)
	not _gateway_routed(host, routes)
}

_gateway_routed(host, routes) if {
	some vs in routes[host]
	some section in ["http", "tls", "tcp"]
	some route in vs.spec[section]
	lib.mesh_route(vs, route)
	some d in route.route
	lib.is_gateway_host(d.destination.host, object.get(vs, ["metadata", "namespace"], ""))
}
