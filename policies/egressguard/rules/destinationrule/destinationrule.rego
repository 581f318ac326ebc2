# DestinationRule rules: TLS to an external host is never switched off, never
# left unverified, and never weaker than the origination the platform set for
# the host. Missing or weaker origination is fixed by the originate_tls intent.
package egressguard.rules.destinationrule

import data.egressguard.lib

_dr := input.object if input.kind.kind == "DestinationRule"

_host := _dr.spec.host

# _tls contains [path, tls] for every TLS setting of the object.
_tls contains ["spec.trafficPolicy", tp.tls] if {
	tp := _dr.spec.trafficPolicy
	tp.tls
}

_tls contains [sprintf("spec.trafficPolicy.portLevelSettings[%d]", [i]), pls.tls] if {
	some i, pls in _dr.spec.trafficPolicy.portLevelSettings
	pls.tls
}

_tls contains [sprintf("spec.subsets[%d].trafficPolicy", [k]), subset.trafficPolicy.tls] if {
	some k, subset in _dr.spec.subsets
	subset.trafficPolicy.tls
}

_tls contains [sprintf("spec.subsets[%d].trafficPolicy.portLevelSettings[%d]", [k, i]), pls.tls] if {
	some k, subset in _dr.spec.subsets
	some i, pls in subset.trafficPolicy.portLevelSettings
	pls.tls
}

# EGR301: TLS switched off for an external host.
deny contains {
	"code": "EGR301",
	"field": field,
	"message": sprintf("%s: tls mode %q turns off tls to external host %q", [field, "DISABLE", _host]),
} if {
	_host in lib.external_hosts
	some [path, tls] in _tls
	tls.mode == "DISABLE"
	field := concat(".", [path, "tls.mode"])
}

# EGR302: the upstream certificate is not verified.
deny contains {
	"code": "EGR302",
	"field": field,
	"message": sprintf("%s: %q skips verification of external host %q", [field, "true", _host]),
} if {
	_host in lib.external_hosts
	some [path, tls] in _tls
	tls.insecureSkipVerify == true
	field := concat(".", [path, "tls.insecureSkipVerify"])
}

# The TLS in force on the origination port: a port-level setting for the port
# replaces the traffic policy's entirely (Istio does not inherit destination
# level settings into port-level ones, and uses the first setting of a port),
# else the traffic policy's.
_effective(port) := [sprintf("spec.trafficPolicy.portLevelSettings[%d].tls", [i]), object.get(_dr.spec.trafficPolicy.portLevelSettings[i], "tls", {})] if {
	i := [j | some j, pls in _dr.spec.trafficPolicy.portLevelSettings; pls.port.number == port][0]
} else := ["spec.trafficPolicy.tls", _dr.spec.trafficPolicy.tls] if {
	_dr.spec.trafficPolicy.tls
} else := ["spec.trafficPolicy.tls", {}]

# _port_level(path, policy, port): [path, tls] of the policy's first
# port-level setting for port.
_port_level(path, policy, port) := [sprintf("%s.portLevelSettings[%d].tls", [path, i]), object.get(policy.portLevelSettings[i], "tls", {})] if {
	i := [j | some j, pls in policy.portLevelSettings; pls.port.number == port][0]
}

# _subset_tls(k, subset, port): the TLS subset k puts in force on port instead
# of the destination's: its own port-level setting for the port, else its
# traffic policy's tls (Istio merges a subset's policy over the destination's).
# A subset with neither uses the destination's.
_subset_tls(k, subset, port) := tls if {
	tls := _port_level(sprintf("spec.subsets[%d].trafficPolicy", [k]), subset.trafficPolicy, port)
} else := [sprintf("spec.subsets[%d].trafficPolicy.tls", [k]), subset.trafficPolicy.tls] if {
	subset.trafficPolicy.tls
}

# EGR303: weaker TLS than the origination the platform set for the host, for
# the destination or for one of its subsets.
deny contains violation if {
	_host in lib.external_hosts
	o := lib.request_origination[_host]
	[path, tls] := _effective(o.port)
	violation := _weaker(o, path, tls)
}

deny contains violation if {
	some k, subset in _dr.spec.subsets
	_host in lib.external_hosts
	o := lib.request_origination[_host]
	[path, tls] := _subset_tls(k, subset, o.port)
	violation := _weaker(o, path, tls)
}

_weaker(o, path, tls) := {
	"code": "EGR303",
	"field": field,
	"message": sprintf("%s: tls mode %q on port %d of external host %q is weaker than the required %q", [field, mode, o.port, _host, o.mode]),
} if {
	mode := object.get(tls, "mode", "DISABLE")
	lib.tls_strength(mode) < lib.tls_strength(o.mode)
	field := concat(".", [path, "mode"])
}

# originate_tls: set the origination's port-level TLS when it is missing,
# weaker, or lacks the credential or SNI. It fixes EGR303, whose action it
# takes (a dry run records the patch instead of applying it).
intents contains {
	"type": "originate_tls",
	"code": "EGR303",
	"port": o.port,
	"mode": o.mode,
	"credentialName": object.get(o, "credentialName", ""),
	"sni": object.get(o, "sni", ""),
} if {
	_host in lib.external_hosts
	o := lib.request_origination[_host]
	[_, tls] := _effective(o.port)
	_needs_origination(tls, o)
}

_needs_origination(tls, o) if lib.tls_strength(object.get(tls, "mode", "DISABLE")) < lib.tls_strength(o.mode)

_needs_origination(tls, o) if {
	lib.tls_strength(object.get(tls, "mode", "DISABLE")) == lib.tls_strength(o.mode)
	object.get(o, "credentialName", "") != ""
	object.get(tls, "credentialName", "") == ""
}

_needs_origination(tls, o) if {
	lib.tls_strength(object.get(tls, "mode", "DISABLE")) == lib.tls_strength(o.mode)
	object.get(o, "sni", "") != ""
	object.get(tls, "sni", "") == ""
}

# EGR405: mesh-wide configuration in the root namespace (lib).
deny contains v if {
	v := lib.root_namespace_violation
}
