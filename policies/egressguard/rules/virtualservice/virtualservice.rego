# VirtualService rules: mesh traffic to an external host goes through the egress
# gateway, and only to allowed hosts. A direct mesh route to an allowed host is
# fixed by the route_via_gateway intent (two legs: mesh -> gateway -> host).
package egressguard.rules.virtualservice

import data.egressguard.lib

_vs := input.object if input.kind.kind == "VirtualService"

_ns := input.namespace

_sections := ["http", "tls", "tcp"]

# _routes contains [section, index, route] for every route of the object.
_routes contains [section, i, route] if {
	some section in _sections
	some i, route in object.get(_vs.spec, section, [])
}

# The hosts a route serves: a TLS route's SNI names, else the object's hosts.
_route_hosts("tls", route) := {h |
	some m in route.match
	some h in m.sniHosts
} if {
	some m in object.get(route, "match", [])
	count(object.get(m, "sniHosts", [])) > 0
}

else := {h | some h in _vs.spec.hosts}

_route_hosts(section, _) := {h | some h in _vs.spec.hosts} if section != "tls"

_external_traffic(section, route) if {
	some h in _route_hosts(section, route)
	lib.external(h)
}

_external_traffic(_, route) if {
	some d in route.route
	lib.external(d.destination.host)
}

_dest_port(d) := object.get(d, ["destination", "port", "number"], 0)

# EGR201: a mesh route for external traffic whose destination is not the
# egress gateway Service.
deny contains {
	"code": "EGR201",
	"field": field,
	"message": sprintf("%s: mesh traffic to external host %q must go through the egress gateway %q, not to %q", [field, host, lib.gateway_host, d.destination.host]),
} if {
	some [section, i, route] in _routes
	lib.mesh_route(_vs, route, _ns)
	_external_traffic(section, route)
	some j, d in route.route
	not lib.is_gateway_host(d.destination.host, _ns)
	field := sprintf("spec.%s[%d].route[%d].destination.host", [section, i, j])
	host := _first_external(section, route, d)
}

_first_external(section, route, d) := d.destination.host if lib.external(d.destination.host)

else := min({h | some h in _route_hosts(section, route); lib.external(h)})

# EGR202: an external host of a mesh-bound VirtualService that no allow entry
# covers for the namespace.
deny contains {
	"code": "EGR202",
	"field": sprintf("spec.hosts[%d]", [i]),
	"message": sprintf("spec.hosts[%d]: external host %q is not allowed for namespace %q", [i, host, _ns]),
} if {
	lib.mesh_bound(_vs)
	some i, host in _vs.spec.hosts
	lib.external(host)
	not lib.allowed_host(host, _ns)
}

# EGR202: a route destination (on any gateway) to an external host, or port,
# that no allow entry covers for the namespace.
deny contains {
	"code": "EGR202",
	"field": field,
	"message": sprintf("%s: external host %q is not allowed for namespace %q", [field, d.destination.host, _ns]),
} if {
	some [section, i, route] in _routes
	some j, d in route.route
	lib.external(d.destination.host)
	not lib.allowed_host(d.destination.host, _ns)
	field := sprintf("spec.%s[%d].route[%d].destination.host", [section, i, j])
}

deny contains {
	"code": "EGR202",
	"field": field,
	"message": sprintf("%s: port %d of external host %q is not allowed for namespace %q", [field, _dest_port(d), d.destination.host, _ns]),
} if {
	some [section, i, route] in _routes
	some j, d in route.route
	lib.external(d.destination.host)
	lib.allowed_host(d.destination.host, _ns)
	not lib.allowed_port(d.destination.host, _dest_port(d), _ns)
	field := sprintf("spec.%s[%d].route[%d].destination.port.number", [section, i, j])
}

# route_via_gateway: a mesh route whose destinations are all allowed external
# hosts goes direct; it can be split into a mesh leg to the gateway and a
# gateway leg to the hosts.
intents contains {
	"type": "route_via_gateway",
	"section": section,
	"index": i,
	"gatewayHost": lib.gateway_host,
	"gateway": lib.gateway_ref,
	"gatewayPort": _gateway_port(section, route),
	"gatewaySubset": _subset(route),
	"targetPorts": [_target_port(section, d) | some d in route.route],
} if {
	some [section, i, route] in _routes
	lib.mesh_route(_vs, route, _ns)
	count(object.get(route, "route", [])) > 0
	every d in route.route {
		lib.external(d.destination.host)
		not lib.is_gateway_host(d.destination.host, _ns)
		lib.allowed_port(d.destination.host, _dest_port(d), _ns)
	}
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
_target_port("http", d) := o.port if o := lib.origination(d.destination.host, _ns)

else := _dest_port(d)

_target_port(section, d) := _dest_port(d) if section != "http"

_subset(route) := subsets[0] if {
	subsets := [entry.gatewaySubset |
		some d in route.route
		some entry in lib.entries(d.destination.host, _ns)
		entry.gatewaySubset
	]
	count(subsets) > 0
} else := ""
