# Topology rules: a VirtualService's egress legs checked against the rest of
# the egress path. A gateway leg binds to the configured Gateway (EGR601);
# with the cluster model (data.inventory.objects) the Gateway exists and has
# a server for the leg (EGR602, EGR603), a mesh leg's gateway subset is
# defined where the namespace sees it (EGR604), and a routed external host is
# registered where the namespace sees it (EGR605). Each is checked only when
# the model knows the kind it looks up (files given to check may hold none). Existence depends on the
# order objects are applied in: those four warn at admission under deny
# enforcement (overrides may say otherwise) and are findings of the audit.
package egressguard.rules.virtualservice

import data.egressguard.lib

_model := data.inventory.objects

# _existence: the violation v of an existence check, with its default action.
_existence(v) := object.union(v, {"action": "warn"}) if data.config.enforcement == "deny"

else := v

# _gateway_key(name): a gateway reference of the object as namespace/name.
_gateway_key(name) := name if contains(name, "/")

else := concat("/", [_ns, name])

# _route_gateways(route): the gateways (other than mesh) a route applies to:
# its matches' gateways, else the object's.
_route_gateways(route) := {g |
	some m in route.match
	some g in m.gateways
	g != "mesh"
} if {
	some m in route.match
	count(object.get(m, "gateways", [])) > 0
} else := {g | some g in object.get(_vs.spec, "gateways", []); g != "mesh"}

# _gateway_leg contains [section, i, route]: spec.<section>[i] sends an
# external host's traffic from a gateway.
_gateway_leg contains [section, i, route] if {
	some section in _sections
	some i, route in _vs.spec[section]
	count(_route_gateways(route)) > 0
	some d in route.route
	d.destination.host in _external
}

# EGR601: a gateway leg that does not bind to the egress gateway's Gateway:
# its traffic is sent from another gateway (or from none at all).
deny contains {
	"code": "EGR601",
	"field": sprintf("spec.%s[%d]", [section, i]),
	"message": sprintf("spec.%s[%d]: the gateway leg to external host %q binds to %s, not to the egress gateway's Gateway %q", [section, i, _leg_host(route), concat(", ", sort(_route_gateways(route))), lib.gateway_ref]),
} if {
	some [section, i, route] in _gateway_leg
	every g in _route_gateways(route) {
		_gateway_key(g) != lib.gateway_ref
	}
}

_leg_host(route) := min({d.destination.host | some d in route.route; d.destination.host in _external})

# _bound_leg contains [section, i, route]: a gateway leg bound to the egress
# gateway's Gateway, checked against the model.
_bound_leg contains [section, i, route] if {
	_model.Gateway
	some [section, i, route] in _gateway_leg
	some g in _route_gateways(route)
	_gateway_key(g) == lib.gateway_ref
}

# EGR602: the egress gateway's Gateway does not exist.
deny contains _existence({
	"code": "EGR602",
	"field": sprintf("spec.%s[%d]", [section, i]),
	"message": sprintf("spec.%s[%d]: the gateway leg to external host %q binds to Gateway %q, which does not exist", [section, i, _leg_host(route), lib.gateway_ref]),
}) if {
	some [section, i, route] in _bound_leg
	not _model.Gateway[lib.gateway_ref]
}

# EGR603: the Gateway exists but has no server for the leg's host, port and
# protocol.
deny contains _existence({
	"code": "EGR603",
	"field": sprintf("spec.%s[%d]", [section, i]),
	"message": sprintf("spec.%s[%d]: Gateway %q has no %s server on port %d for host %q, which the gateway leg needs", [section, i, lib.gateway_ref, upper(section), port, host]),
}) if {
	some [section, i, route] in _bound_leg
	gateway := _model.Gateway[lib.gateway_ref]
	some host in _leg_hosts(section, route)
	some port in _leg_ports(route)
	not _serves(gateway, section, host, port)
}

# _leg_hosts(section, route): the hosts a gateway leg receives: a TLS leg's
# SNI names, else the object's hosts.
_leg_hosts("tls", route) := {h | some m in route.match; some h in m.sniHosts} if _has_sni(route)

else := {h | some h in _vs.spec.hosts}

_leg_hosts(section, _) := {h | some h in _vs.spec.hosts} if section != "tls"

# _leg_ports(route): the ports its matches name for the gateway (none: the
# route is not checked by port).
_leg_ports(route) := {m.port |
	some m in route.match
	m.port
	some g in object.get(m, "gateways", _route_gateways(route))
	_gateway_key(g) == lib.gateway_ref
}

# _serves(gateway, section, host, port): a server of gateway listens on
# port with a protocol that carries the section, for host.
_serves(gateway, section, host, port) if {
	some server in gateway.spec.servers
	server.port.number == port
	_carries(section, server)
	some pattern in server.hosts
	_server_host_covers(pattern, host)
}

# _carries(section, server): the server takes the leg's traffic. HTTP from
# the mesh may arrive in Istio's mTLS (HTTPS with ISTIO_MUTUAL, scenario
# 000); a TLS leg needs the SNI: a TLS server, or HTTPS passing it through;
# TCP arrives plain or in Istio's mTLS.
_carries("http", server) if upper(server.port.protocol) in {"HTTP", "HTTP2", "GRPC"}

_carries("http", server) if {
	upper(server.port.protocol) == "HTTPS"
	object.get(server, ["tls", "mode"], "") != "PASSTHROUGH"
}

_carries("tls", server) if upper(server.port.protocol) == "TLS"

_carries("tls", server) if {
	upper(server.port.protocol) == "HTTPS"
	server.tls.mode == "PASSTHROUGH"
}

_carries("tcp", server) if upper(server.port.protocol) in {"TCP", "TLS", "MONGO", "MYSQL", "REDIS"}

# A server host is [namespace/]host; "*" and "*." wildcards cover.
_server_host_covers(pattern, host) if {
	name := _server_host_name(pattern)
	name == "*"
}

_server_host_covers(pattern, host) if lib.covers(_server_host_name(pattern), host)

_server_host_name(pattern) := substring(pattern, indexof(pattern, "/") + 1, -1) if contains(pattern, "/")

else := pattern

# EGR604: a mesh leg to a subset of the egress gateway that no DestinationRule
# the namespace sees defines. Istio looks a DestinationRule up in the
# client's namespace, then in the Service's, then in the root namespace,
# each exported to the client's namespace.
deny contains _existence({
	"code": "EGR604",
	"field": sprintf("spec.%s[%d].route[%d].destination.subset", [section, i, j]),
	"message": sprintf("spec.%s[%d].route[%d].destination.subset: no DestinationRule for %q that namespace %q sees defines subset %q%s", [section, i, j, lib.gateway_host, _ns, d.destination.subset, _seen_rule(_gateway_rule)]),
}) if {
	_model.DestinationRule
	some section in _sections
	some i, route in _vs.spec[section]
	lib.mesh_route(_vs, route)
	some j, d in route.route
	lib.is_gateway_host(d.destination.host, _ns)
	d.destination.subset
	not _subset_defined(d.destination.subset)
}

# _gateway_rule: the DestinationRule for the gateway host Istio applies to
# the object's namespace, by its lookup path ({} for none).
_gateway_rule := rule if {
	rules := [r |
		some ns in [_ns, data.config.gateway.namespace, object.get(data.config, ["platform", "rootNamespace"], "istio-system")]
		some r in object.get(data.inventory.byHost, ["DestinationRule", lib.gateway_host], [])
		r.metadata.namespace == ns
		_exported_to(r, _ns)
	]
	count(rules) > 0
	rule := rules[0]
} else := {}

_subset_defined(name) if {
	some s in _gateway_rule.spec.subsets
	s.name == name
}

_seen_rule(rule) := sprintf(" (DestinationRule %s/%s applies, without it)", [rule.metadata.namespace, rule.metadata.name]) if rule.metadata

else := ""

# _exported_to(obj, ns): an object with exportTo is seen from namespace ns.
_exported_to(obj, ns) if {
	exports := object.get(obj.spec, "exportTo", [])
	_export_covers(exports, obj.metadata.namespace, ns)
}

_export_covers(exports, _, _) if count(exports) == 0

_export_covers(exports, _, _) if "*" in exports

_export_covers(exports, _, ns) if ns in exports

_export_covers(exports, own, ns) if {
	"." in exports
	own == ns
}

# EGR605: a mesh-bound external host that no ServiceEntry the namespace sees
# registers: under REGISTRY_ONLY its traffic goes nowhere.
deny contains _existence({
	"code": "EGR605",
	"field": sprintf("spec.hosts[%d]", [i]),
	"message": sprintf("spec.hosts[%d]: no ServiceEntry that namespace %q sees registers external host %q: under REGISTRY_ONLY its traffic is dropped", [i, _ns, host]),
}) if {
	_model.ServiceEntry
	lib.mesh_bound(_vs)
	some i, host in _vs.spec.hosts
	host in _external
	not _registered_for(host, _ns)
}

_registered_for(host, ns) if {
	some se in object.get(data.inventory.byHost, ["ServiceEntry", host], [])
	_exported_to(se, ns)
}

_registered_for(host, ns) if {
	some suffix in lib.suffixes(host)
	some se in object.get(data.inventory.byHost, ["ServiceEntry", concat("", ["*", suffix])], [])
	_exported_to(se, ns)
}

# _listener_port(section, route): the port the gateway leg of a direct route
# matches on once routed through the gateway: the mesh leg's gateway port
# where the Gateway serves the route's hosts there (or where the model says
# nothing), else the lowest port of a server of the Gateway that does (the
# gateway's Service port 443 reaching its listener 8443); 0: the same.
_listener_port(section, route) := p if {
	gateway := _model.Gateway[lib.gateway_ref]
	port := _gateway_port(section, route)
	hosts := _leg_hosts(section, route)
	not _serves_all(gateway, section, hosts, port)
	ports := {s.port.number |
		some s in gateway.spec.servers
		_serves_all(gateway, section, hosts, s.port.number)
	}
	count(ports) > 0
	p := min(ports)
} else := 0

_serves_all(gateway, section, hosts, port) if {
	every host in hosts {
		_serves(gateway, section, host, port)
	}
}

# EGR606: a gateway leg that sends an external host's HTTP or TCP traffic
# to another port than the one the platform originates TLS on for the host:
# the gateway would send it on in plain text. The origination_port intent
# sends it to the origination port, under EGR606's action, where the leg's
# port is one the allow entry lets the namespace use (the same service in
# plain text); a leg to a port it does not allow is left as it is, denied.
intents contains {
	"type": "origination_port",
	"code": "EGR606",
	"leg": {"section": section, "index": i, "route": j},
	"to": origination.port,
} if {
	some [section, i, route] in _gateway_leg
	section != "tls"
	some j, d in route.route
	origination := lib.request_origination[d.destination.host]
	_dest_port(d) != origination.port
	lib.request_port_ok(d.destination.host, _dest_port(d))
}

deny contains {
	"code": "EGR606",
	"field": sprintf("spec.%s[%d].route[%d].destination.port.number", [section, i, j]),
	"message": sprintf("spec.%s[%d].route[%d].destination.port.number: the platform originates %s tls to external host %q on port %d; the gateway leg sends it to port %d, in plain text", [section, i, j, origination.mode, d.destination.host, origination.port, _dest_port(d)]),
} if {
	some [section, i, route] in _gateway_leg
	section != "tls"
	some j, d in route.route
	origination := lib.request_origination[d.destination.host]
	_dest_port(d) != origination.port
}

# EGR608: a gateway leg to a host the platform originates TLS for, while no
# DestinationRule the gateway sees originates it: the gateway, which
# originates, reads the DestinationRules exported to its namespace; one for
# the host whose tls on the origination port is as strong as the
# origination must be among them.
deny contains _existence({
	"code": "EGR608",
	"field": sprintf("spec.%s[%d].route[%d].destination.host", [section, i, j]),
	"message": sprintf("spec.%s[%d].route[%d].destination.host: no DestinationRule that the gateway's namespace %q sees originates %s tls to external host %q on port %d", [section, i, j, data.config.gateway.namespace, origination.mode, d.destination.host, origination.port]),
}) if {
	_model.DestinationRule
	some [section, i, route] in _gateway_leg
	section != "tls"
	some j, d in route.route
	origination := lib.request_origination[d.destination.host]
	_dest_port(d) == origination.port
	not _originated(d.destination.host, origination)
}

_originated(host, origination) if {
	some r in object.get(data.inventory.byHost, ["DestinationRule", host], [])
	_exported_to(r, data.config.gateway.namespace)
	mode := object.get(_port_tls(r.spec, origination.port), "mode", "DISABLE")
	lib.tls_strength(mode) >= lib.tls_strength(origination.mode)
}

# _port_tls(spec, port): the tls a DestinationRule puts in force on port: its
# first port-level setting for the port, else its traffic policy's.
_port_tls(spec, port) := object.get(pls, "tls", {}) if {
	pls := [p | some p in spec.trafficPolicy.portLevelSettings; p.port.number == port][0]
} else := object.get(spec, ["trafficPolicy", "tls"], {})
