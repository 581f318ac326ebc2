# VirtualService rules: mesh traffic to an external host goes through the egress
# gateway, and only to allowed hosts. A direct mesh route to an allowed host is
# fixed by the route_via_gateway intent (two legs: mesh -> gateway -> host).
package egressguard.rules.virtualservice

import data.egressguard.lib

_vs := input.object if input.kind.kind == "VirtualService"

_ns := input.namespace

_sections := ["http", "tls", "tcp"]

_external := lib.external_hosts

_allowed := lib.allowed_hosts

_object_external if {
	some host in _vs.spec.hosts
	host in _external
}

_has_sni(route) if {
	some m in route.match
	count(object.get(m, "sniHosts", [])) > 0
}

# _external_traffic(section, route): the route carries traffic for an
# external host: a TLS route's SNI names (else the object's hosts) or a
# destination is external.
_external_traffic(section, _) if {
	section != "tls"
	_object_external
}

_external_traffic("tls", route) if {
	not _has_sni(route)
	_object_external
}

_external_traffic("tls", route) if {
	some m in route.match
	some host in m.sniHosts
	host in _external
}

_external_traffic(_, route) if {
	some d in route.route
	d.destination.host in _external
}

_dest_port(d) := object.get(d, ["destination", "port", "number"], 0)

# EGR201: a mesh route for external traffic whose destination is not the
# egress gateway Service.
deny contains {
	"code": "EGR201",
	"field": field,
	"message": sprintf("%s: mesh traffic to external host %q must go through the egress gateway %q, not to %q", [field, _named_external(section, route, d), lib.gateway_host, d.destination.host]),
} if {
	some section in _sections
	some i, route in _vs.spec[section]
	lib.mesh_route(_vs, route)
	_external_traffic(section, route)
	some j, d in route.route
	not lib.is_gateway_host(d.destination.host, _ns)
	field := sprintf("spec.%s[%d].route[%d].destination.host", [section, i, j])
}

_named_external(section, route, d) := d.destination.host if d.destination.host in _external

else := min({host |
	some m in route.match
	some host in m.sniHosts
	host in _external
}) if {
	section == "tls"
}

else := min({host | some host in _vs.spec.hosts; host in _external})

# EGR202: an external host of a mesh-bound VirtualService that no allow entry
# covers for the namespace.
deny contains {
	"code": "EGR202",
	"field": sprintf("spec.hosts[%d]", [i]),
	"message": sprintf("spec.hosts[%d]: external host %q is not allowed for namespace %q", [i, host, _ns]),
} if {
	lib.mesh_bound(_vs)
	some i, host in _vs.spec.hosts
	host in _external
	not host in _allowed
}

# EGR202: a route destination (on any gateway) to an external host, or port,
# that no allow entry covers for the namespace.
deny contains {
	"code": "EGR202",
	"field": field,
	"message": message,
} if {
	some section in _sections
	some i, route in _vs.spec[section]
	some j, d in route.route
	d.destination.host in _external
	[field, message] := _destination_problem(section, i, j, d)
}

_destination_problem(section, i, j, d) := [field, sprintf("%s: external host %q is not allowed for namespace %q", [field, d.destination.host, _ns])] if {
	not d.destination.host in _allowed
	field := sprintf("spec.%s[%d].route[%d].destination.host", [section, i, j])
}

_destination_problem(section, i, j, d) := [field, sprintf("%s: port %d of external host %q is not allowed for namespace %q", [field, _dest_port(d), d.destination.host, _ns])] if {
	d.destination.host in _allowed
	not lib.request_port_ok(d.destination.host, _dest_port(d))
	field := sprintf("spec.%s[%d].route[%d].destination.port.number", [section, i, j])
}

# EGR203: a mesh route that mirrors traffic to an external host. The copy
# leaves from the sidecar, straight to the host, not through the egress
# gateway; no mutation fixes it.
deny contains {
	"code": "EGR203",
	"field": field,
	"message": sprintf("%s: mesh traffic mirrored to external host %q bypasses the egress gateway %q", [field, host, lib.gateway_host]),
} if {
	some i, route in _vs.spec.http
	lib.mesh_route(_vs, route)
	some [field, host] in _mirrors(i, route)
	lib.external(host)
	not lib.is_gateway_host(host, _ns)
}

# _mirrors(i, route): [field, host] of every mirror destination of route i.
_mirrors(i, route) := array.concat(
	[[sprintf("spec.http[%d].mirror.host", [i]), route.mirror.host] | route.mirror.host],
	[[sprintf("spec.http[%d].mirrors[%d].destination.host", [i, k]), m.destination.host] | some k, m in route.mirrors],
)

# route_via_gateway: a mesh route whose destinations are all allowed external
# hosts goes direct; it can be split into a mesh leg to the gateway and a
# gateway leg to the hosts. It fixes EGR201, whose action it takes (a dry run
# records the patch instead of applying it).
intents contains {
	"type": "route_via_gateway",
	"code": "EGR201",
	"section": section,
	"index": i,
	"gatewayHost": lib.gateway_host,
	"gateway": lib.gateway_ref,
	"gatewayPort": _gateway_port(section, route),
	"gatewaySubset": _subset(route),
	"targetPorts": [_target_port(section, d) | some d in route.route],
	"listenerPort": _listener_port(section, route),
} if {
	some section in _sections
	some i, route in _vs.spec[section]
	count(object.get(route, "route", [])) > 0
	every d in route.route {
		d.destination.host in _allowed
		lib.request_port_ok(d.destination.host, _dest_port(d))
	}
	lib.mesh_route(_vs, route)
}

_gateway_port("http", _) := data.config.gateway.ports.http

_gateway_port("tcp", _) := data.config.gateway.ports.tcp

# TLS passthrough keeps its port end to end.
_gateway_port("tls", route) := p if {
	ports := {m.port | some m in object.get(route, "match", []); m.port}
	count(ports) > 0
	p := min(ports)
} else := p if {
	ports := {_dest_port(d) | some d in route.route; _dest_port(d) > 0}
	count(ports) > 0
	p := min(ports)
} else := 443

# HTTP with origination goes to the origination port; anything else keeps
# the destination's port (0: none given).
_target_port("http", d) := p if {
	p := lib.request_origination[d.destination.host].port
} else := _dest_port(d)

_target_port(section, d) := _dest_port(d) if section != "http"

_subset(route) := subsets[0] if {
	subsets := [entry.gatewaySubset |
		some d in route.route
		some entry in lib.host_entries[d.destination.host]
		entry.gatewaySubset
	]
	count(subsets) > 0
} else := ""

# Deletions. The object deleted is input.oldObject (input.object is null).
_deleted := input.oldObject if {
	input.operation == "DELETE"
	input.kind.kind == "VirtualService"
}

# Kubernetes' own controllers delete what a deleted namespace or owner held;
# refusing them would leave the namespace terminating, or the object orphaned,
# until the ServiceEntry is gone.
_cleanup_users := {
	"system:serviceaccount:kube-system:namespace-controller",
	"system:serviceaccount:kube-system:generic-garbage-collector",
}

# _gateway_routed contains [host, section, i]: the deleted object's mesh route
# spec.<section>[i] sends host's traffic to the egress gateway.
_gateway_routed contains [host, section, i] if {
	some section in _sections
	some i, route in _deleted.spec[section]
	lib.mesh_route(_deleted, route)
	some d in route.route
	lib.is_gateway_host(d.destination.host, _ns)
	some host in _route_hosts(section, route)
}

_route_hosts("tls", route) := {host | some m in route.match; some host in m.sniHosts} if _has_sni(route)

else := {host | some host in _deleted.spec.hosts}

_route_hosts(section, _) := {host | some host in _deleted.spec.hosts} if section != "tls"

# EGR204: deleting the route that sends an external host's mesh traffic to the
# egress gateway while a ServiceEntry still registers the host: the sidecars
# would then reach it directly.
deny contains {
	"code": "EGR204",
	"field": sprintf("spec.%s[%d]", [section, i]),
	"message": sprintf("spec.%s[%d]: deleting the route of external host %q through the egress gateway while a ServiceEntry still registers it would let the sidecars reach it directly; delete the ServiceEntry first", [section, i, host]),
} if {
	_deleted
	not input.userInfo.username in _cleanup_users
	some [host, section, i] in _gateway_routed
	lib.registered(host)
}

# EGR405: mesh-wide configuration in the root namespace (lib).
deny contains v if {
	v := lib.root_namespace_violation
}
