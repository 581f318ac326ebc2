# Host helpers shared by the rule pack: what is external, what is allowed,
# and whether a route is seen by the mesh.
package egressguard.lib

# A name the cluster's DNS answers: a short name, a Service name, or a name
# under .local (the cluster domain, and names reserved for local use).
cluster_local(host) if not contains(host, ".")

cluster_local(host) if endswith(host, ".svc")

cluster_local(host) if endswith(host, data.config.serviceSuffix)

cluster_local(host) if endswith(host, ".local")

# covers(pattern, host): pattern is host, or a "*." wildcard over it.
covers(pattern, host) if pattern == host

covers(pattern, host) if {
	startswith(pattern, "*.")
	endswith(host, substring(pattern, 1, -1))
}

# external(host): traffic to host leaves the cluster: host is not a cluster
# name, or the allow list or a MESH_EXTERNAL ServiceEntry names it (exactly
# or with a "*." wildcard over it).
external(host) if not cluster_local(host)

external(host) if _allow_index.hosts[host]

external(host) if data.inventory.externalHosts[host]

external(host) if {
	some suffix in _suffixes(host)
	_external_suffix(suffix)
}

_external_suffix(suffix) if _allow_index.suffixes[suffix]

# registered(host): a MESH_EXTERNAL ServiceEntry of the inventory registers
# host, by name or with a "*." wildcard over it (a wildcard host "*.x.com" is
# registered by the entry "*.x.com" or a wider one).
registered(host) if data.inventory.externalHosts[host]

registered(host) if {
	some suffix in _suffixes(host)
	_external_suffixes[suffix]
}

_external_suffix(suffix) if _external_suffixes[suffix]

# The allow entries that cover host for namespace ns, in the list's order
# (an entry once per pattern of it that covers host).
entries(host, ns) := [entry |
	some position in _covering(host)
	entry := data.config.allow[position[0]]
	_namespace_ok(entry, ns)
]

# Indexes. Lookups never scan the allow list or the inventory: a host is
# looked up by name, and by each of its suffixes that starts at a dot (the
# "*." wildcards over it), so that a review costs the same with ten entries
# or ten thousand. The engine builds the indexes once per configuration
# (data.config.allowIndex) and once per inventory
# (data.inventory.externalSuffixIndex); data without them (a test's own
# data.config or data.inventory) gets them derived here, per evaluation.

# _suffixes(host): the suffixes of host that start at a dot ("a.b.com":
# ".b.com" and ".com"), by which "*." wildcards are indexed; iterated, not
# gathered (some suffix in _suffixes(host) would build a set per call).
_suffixes(host) := [substring(host, i, -1) | some i in indexof_n(host, ".")]

# suffixes(host): _suffixes, for the rules that look "*." wildcards up in
# the cluster model by the same suffixes.
suffixes(host) := _suffixes(host)

# _covering(host): the positions [entry, pattern] in data.config.allow of the
# patterns that cover host. A set iterates in order: by entry, then pattern.
_covering(host) := {position |
	some position in _allow_index.hosts[host]
} | {position |
	some suffix in _suffixes(host)
	some position in _allow_index.suffixes[suffix]
}

# _allow_index.hosts[name]: the positions [entry, pattern] in
# data.config.allow of the patterns equal to name that are not "*."
# wildcards; _allow_index.suffixes[".x.com"]: those of the pattern "*.x.com".
# Positions come in the list's order.
_allow_index := data.config.allowIndex

_allow_index := {
	"hosts": {pattern: _positions(pattern) |
		some entry in data.config.allow
		some pattern in entry.hosts
		not startswith(pattern, "*.")
	},
	"suffixes": {substring(pattern, 1, -1): _positions(pattern) |
		some entry in data.config.allow
		some pattern in entry.hosts
		startswith(pattern, "*.")
	},
} if not data.config.allowIndex

_positions(pattern) := [[i, j] |
	some i, entry in data.config.allow
	some j, p in entry.hosts
	p == pattern
]

# _external_suffixes[".x.com"]: a MESH_EXTERNAL ServiceEntry has the host
# "*.x.com".
_external_suffixes := data.inventory.externalSuffixIndex

_external_suffixes := {suffix: true | some suffix in data.inventory.externalSuffixes} if not data.inventory.externalSuffixIndex

_namespace_ok(entry, _) if not entry.namespaces

_namespace_ok(entry, ns) if ns in entry.namespaces

allowed_host(host, ns) if count(entries(host, ns)) > 0

# allowed_port(host, port, ns): port 0 stands for "no port given".
allowed_port(host, port, ns) if _port_ok(entries(host, ns), port)

_port_ok(found, 0) if count(found) > 0

_port_ok(found, _) if {
	some entry in found
	not entry.ports
}

_port_ok(found, port) if {
	some entry in found
	port in entry.ports
}

# endpoint_allowed(address, host, ns): a ServiceEntry in ns may send the
# traffic of host, an allowed external host, to address: a DNS name the allow
# list covers for ns, or an IP address inside the addresses of an entry that
# covers host for ns.
endpoint_allowed(address, _, ns) if {
	not _is_ip(address)
	allowed_host(address, ns)
}

endpoint_allowed(address, host, ns) if {
	_is_ip(address)
	some entry in entries(host, ns)
	some cidr in object.get(entry, "addresses", [])
	net.cidr_contains(_as_cidr(cidr), address)
}

# address_allowed(address, host, ns): the IP address or CIDR range address
# lies inside the addresses of an entry that covers host for ns.
address_allowed(address, host, ns) if {
	some entry in entries(host, ns)
	some cidr in object.get(entry, "addresses", [])
	net.cidr_contains(_as_cidr(cidr), _as_cidr(address))
}

# sni_forwarding(host, ns): an entry that covers host for ns says the platform
# forwards the host by SNI at the egress gateway.
sni_forwarding(host, ns) if {
	some entry in entries(host, ns)
	entry.sniForwarding == true
}

# namespace_restricted(host): every allow entry that covers host names the
# namespaces that may use it.
namespace_restricted(host) if {
	found := _all_entries(host)
	count(found) > 0
	every entry in found {
		entry.namespaces
	}
}

# host_namespaces(host): the namespaces the allow entries that cover host
# name.
host_namespaces(host) := {ns |
	some entry in _all_entries(host)
	some ns in object.get(entry, "namespaces", [])
}

_all_entries(host) := [data.config.allow[position[0]] | some position in _covering(host)]

_is_ip(address) if net.cidr_is_valid(concat("", [address, "/32"]))

_as_cidr(a) := a if contains(a, "/")

else := concat("", [a, "/128"]) if contains(a, ":")

else := concat("", [a, "/32"])

# The origination entry for host in ns, if any.
origination(host, ns) := _first_origination(entries(host, ns))

_first_origination(found) := origs[0] if {
	origs := [entry.origination | some entry in found; entry.origination]
	count(origs) > 0
}

# Facts about the hosts of the object under review, computed once per
# evaluation: rules should prefer these to the functions above.

# request_hosts: every host the object names.
request_hosts contains host if some host in input.object.spec.hosts

request_hosts contains input.object.spec.host if input.object.spec.host

request_hosts contains d.destination.host if {
	some section in ["http", "tls", "tcp"]
	some route in input.object.spec[section]
	some d in route.route
}

request_hosts contains host if {
	some route in input.object.spec.tls
	some m in route.match
	some host in m.sniHosts
}

# external_hosts: those whose traffic leaves the cluster (never the gateway).
external_hosts contains host if {
	some host in request_hosts
	external(host)
	not is_gateway_host(host, input.namespace)
}

# host_entries[host]: the allow entries covering an external host for the
# object's namespace.
host_entries[host] := entries(host, input.namespace) if some host in external_hosts

allowed_hosts contains host if {
	some host, found in host_entries
	count(found) > 0
}

# request_port_ok(host, port): an external host of the object allows port.
request_port_ok(host, port) if _port_ok(host_entries[host], port)

# request_origination[host]: the origination for an allowed host.
request_origination[host] := _first_origination(found) if some host, found in host_entries

# The egress gateway Service's FQDN and its Gateway resource (namespace/name).
gateway_host := data.config.gatewayHost

gateway_ref := data.config.gateway.gateway

# is_gateway_host(host, ns): host names the egress gateway Service as written
# in a resource in namespace ns.
is_gateway_host(host, _) if data.config.gatewayNames[host]

is_gateway_host(host, ns) if {
	host == data.config.gateway.service
	ns == data.config.gateway.namespace
}

# mesh_bound(vs): the object applies to sidecars (no gateways means mesh).
mesh_bound(vs) if count(object.get(vs.spec, "gateways", [])) == 0

mesh_bound(vs) if "mesh" in vs.spec.gateways

# mesh_route(vs, route): sidecars use the route. A match without gateways
# applies to the object's gateways; a route without matches likewise.
mesh_route(vs, route) if {
	count(object.get(route, "match", [])) == 0
	mesh_bound(vs)
}

mesh_route(vs, route) if {
	some m in route.match
	count(object.get(m, "gateways", [])) == 0
	mesh_bound(vs)
}

mesh_route(_, route) if {
	some m in route.match
	"mesh" in m.gateways
}

# TLS strength, for "never downgrade": unset and DISABLE are plain text.
tls_strength(mode) := {"DISABLE": 0, "SIMPLE": 1, "MUTUAL": 2, "ISTIO_MUTUAL": 2}[mode]

tls_strength(mode) := 0 if not mode in {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
