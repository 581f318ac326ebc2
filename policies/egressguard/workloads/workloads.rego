# Workload rules: a Pod (or the pod template of a Deployment, StatefulSet,
# DaemonSet, ReplicaSet, Job or CronJob) in a mesh namespace may not take its
# traffic around the sidecar: no capture exclusions, no opting out of the
# mesh, not the proxy's identity, not the node's network, no power over
# iptables. The platform's namespaces and identities may. The package of each
# workload kind under egressguard.rules reports these, so that they are
# evaluated for the workload kinds alone.
package egressguard.workloads

import data.egressguard.lib

_prefix := lib.pod_template[0]

_template := lib.pod_template[1]

_annotations := object.get(_template, ["metadata", "annotations"], {})

_labels := object.get(_template, ["metadata", "labels"], {})

# The containers a user wrote: at the Pod level, not those Istio's injector
# added (named in its sidecar.istio.io/status annotation), which run as the
# proxy's identity and set up the capture by design.
_injected contains name if {
	_prefix == ""
	status := json.unmarshal(_annotations["sidecar.istio.io/status"])
	some list in ["containers", "initContainers"]
	some name in status[list]
}

_containers contains [sprintf("%sspec.%s[%d]", [_prefix, list, i]), c] if {
	some list in ["containers", "initContainers", "ephemeralContainers"]
	some i, c in _template.spec[list]
	not c.name in _injected
}

_annotation_field(key) := sprintf("%smetadata.annotations[%q]", [_prefix, key])

_label_field(key) := sprintf("%smetadata.labels[%q]", [_prefix, key])

_owners := lib.platform_owners

# Capture exclusions by annotation: [code, annotation, what it does].
_exclusions := [
	["EGR501", "traffic.sidecar.istio.io/excludeOutboundIPRanges", "sends outbound traffic to these ranges around the sidecar"],
	["EGR502", "traffic.sidecar.istio.io/excludeOutboundPorts", "sends outbound traffic to these ports around the sidecar"],
	["EGR504", "traffic.sidecar.istio.io/excludeInterfaces", "sends the traffic of these interfaces around the sidecar"],
]

# EGR501, EGR502, EGR504: a capture exclusion.
deny contains {
	"code": x[0],
	"field": _annotation_field(x[1]),
	"message": sprintf("%s: %q %s, to go out directly; only %s may set it", [_annotation_field(x[1]), _annotations[x[1]], x[2], _owners]),
} if {
	some x in _exclusions
	trim_space(_annotations[x[1]]) != ""
	not lib.platform_request
}

# EGR503: outbound capture narrowed to some ranges: traffic to the others
# goes around the sidecar.
deny contains {
	"code": "EGR503",
	"field": _annotation_field(key),
	"message": sprintf("%s: %q captures outbound traffic to these ranges only; traffic to any other address goes out around the sidecar; only %s may set it", [_annotation_field(key), _annotations[key], _owners]),
} if {
	key := "traffic.sidecar.istio.io/includeOutboundIPRanges"
	trim_space(_annotations[key]) != "*"
	not lib.platform_request
}

# EGR505: no sidecar in a mesh namespace (label or annotation).
deny contains {
	"code": "EGR505",
	"field": field,
	"message": sprintf("%s: \"false\" runs the workload without a sidecar in a mesh namespace: its traffic leaves directly; only %s may set it", [field, _owners]),
} if {
	some [field, value] in [
		[_label_field("sidecar.istio.io/inject"), _labels["sidecar.istio.io/inject"]],
		[_annotation_field("sidecar.istio.io/inject"), _annotations["sidecar.istio.io/inject"]],
	]
	lower(value) == "false"
	not lib.platform_request
}

# EGR506: interception switched off.
deny contains {
	"code": "EGR506",
	"field": _annotation_field(key),
	"message": sprintf("%s: %q leaves the workload's traffic uncaptured by the sidecar; only %s may set it", [_annotation_field(key), _annotations[key], _owners]),
} if {
	key := "sidecar.istio.io/interceptionMode"
	upper(_annotations[key]) == "NONE"
	not lib.platform_request
}

# EGR507: out of the ambient mesh.
deny contains {
	"code": "EGR507",
	"field": _label_field(key),
	"message": sprintf("%s: \"none\" takes the workload out of the ambient mesh: its traffic leaves directly; only %s may set it", [_label_field(key), _owners]),
} if {
	key := "istio.io/dataplane-mode"
	lower(_labels[key]) == "none"
	not lib.platform_request
}

# EGR508: the proxy's identity (UID or GID 1337): Istio does not capture the
# traffic of that identity, the proxy's own.
deny contains {
	"code": "EGR508",
	"field": field,
	"message": sprintf("%s: 1337 is the proxy's identity, whose traffic the sidecar does not capture; only %s may run as it", [field, _owners]),
} if {
	some field in _proxy_identity
	not lib.platform_request
}

_proxy_identity contains sprintf("%sspec.securityContext.%s", [_prefix, key]) if {
	some key in ["runAsUser", "runAsGroup"]
	_template.spec.securityContext[key] == 1337
}

_proxy_identity contains sprintf("%s.securityContext.%s", [path, key]) if {
	some [path, c] in _containers
	some key in ["runAsUser", "runAsGroup"]
	c.securityContext[key] == 1337
}

# EGR509: the node's network: no sidecar captures it.
deny contains {
	"code": "EGR509",
	"field": sprintf("%sspec.hostNetwork", [_prefix]),
	"message": sprintf("%sspec.hostNetwork: the node's network is not captured by any sidecar: the workload's traffic leaves directly; only %s may use it", [_prefix, _owners]),
} if {
	_template.spec.hostNetwork == true
	not lib.platform_request
}

# EGR510: NET_ADMIN or NET_RAW: a container with them can rewrite the capture
# rules or send raw packets around them.
deny contains {
	"code": "EGR510",
	"field": sprintf("%s.securityContext.capabilities.add[%d]", [path, j]),
	"message": sprintf("%s.securityContext.capabilities.add[%d]: %q lets the container change or bypass the sidecar's capture; only %s may add it", [path, j, cap, _owners]),
} if {
	some [path, c] in _containers
	some j, cap in c.securityContext.capabilities.add
	upper(trim_prefix(upper(cap), "CAP_")) in {"NET_ADMIN", "NET_RAW", "ALL"}
	not lib.platform_request
}
