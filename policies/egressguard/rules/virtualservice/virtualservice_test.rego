package egressguard.rules.virtualservice_test

import data.egressguard.rules.virtualservice

_gw := "istio-egressgateway.istio-system.svc.cluster.local"

_config := {
	"gateway": {
		"namespace": "istio-system",
		"service": "istio-egressgateway",
		"gateway": "istio-system/egress-gateway",
		"ports": {"http": 80, "tcp": 15443},
	},
	"gatewayHost": _gw,
	"gatewayNames": {
		"istio-egressgateway.istio-system.svc.cluster.local": true,
		"istio-egressgateway.istio-system": true,
		"istio-egressgateway.istio-system.svc": true,
	},
	"serviceSuffix": ".svc.cluster.local",
	"enforcement": "deny",
	"exemptNamespaces": ["kube-system", "istio-system"],
	"clusterDomain": "cluster.local",
	"allow": [
		{
			"hosts": ["test.com"], "ports": [80, 443], "namespaces": ["default"],
			"origination": {"mode": "MUTUAL", "port": 443, "credentialName": "test.client", "sni": "test.com"},
		},
		{"hosts": ["istio.io"], "ports": [80, 443], "gatewaySubset": "istio-io"},
		{"hosts": ["*.wikipedia.org"], "ports": [443], "gatewaySubset": "wildcard"},
		{
			"hosts": ["mysql.fqdn.example"], "ports": [3306, 13306], "gatewaySubset": "mysql",
			"origination": {"mode": "MUTUAL", "port": 13306, "credentialName": "client-credential", "sni": "mysql.fqdn.example"},
		},
	],
}

_input(ns, spec) := {
	"operation": "CREATE",
	"kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
	"namespace": ns,
	"name": "x",
	"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
}

_deny(ns, spec) := out if {
	out := virtualservice.deny with input as _input(ns, spec)
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
}

_intents(ns, spec) := out if {
	out := virtualservice.intents with input as _input(ns, spec)
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
}

_codes(ns, spec) := {v.code | some v in _deny(ns, spec)}

_dest(host, port) := {"destination": {"host": host, "port": {"number": port}}}

_intent(section, index, port, subset, targets) := {
	"type": "route_via_gateway",
	"code": "EGR201",
	"section": section,
	"index": index,
	"gatewayHost": _gw,
	"gateway": "istio-system/egress-gateway",
	"gatewayPort": port,
	"gatewaySubset": subset,
	"targetPorts": targets,
	"listenerPort": 0,
}

# Direct mesh routes, as written before the guard splits them.
_direct_http := {"hosts": ["test.com"], "http": [{"route": [_dest("test.com", 80)]}]}

_direct_tls := {"hosts": ["istio.io"], "tls": [{
	"match": [{"port": 443, "sniHosts": ["istio.io"]}],
	"route": [_dest("istio.io", 443)],
}]}

_direct_tcp := {"hosts": ["mysql.fqdn.example"], "tcp": [{
	"match": [{"port": 3306}],
	"route": [_dest("mysql.fqdn.example", 13306)],
}]}

# The same routes split in two legs: mesh -> gateway -> host.
_legs_http := {
	"hosts": ["test.com"],
	"gateways": ["mesh", "istio-system/egress-gateway"],
	"http": [
		{
			"match": [{"gateways": ["mesh"], "port": 80}],
			"route": [_dest(_gw, 80)],
		},
		{
			"match": [{"gateways": ["istio-system/egress-gateway"], "port": 80}],
			"route": [_dest("test.com", 443)],
		},
	],
}

_legs_tls := {
	"hosts": ["istio.io"],
	"gateways": ["mesh", "istio-system/egress-gateway"],
	"tls": [
		{
			"match": [{"gateways": ["mesh"], "port": 443, "sniHosts": ["istio.io"]}],
			"route": [{"destination": {"host": _gw, "subset": "istio-io", "port": {"number": 443}}}],
		},
		{
			"match": [{"gateways": ["istio-system/egress-gateway"], "port": 443, "sniHosts": ["istio.io"]}],
			"route": [_dest("istio.io", 443)],
		},
	],
}

_legs_tcp := {
	"hosts": ["mysql.fqdn.example"],
	"gateways": ["mesh", "istio-system/egress-gateway"],
	"tcp": [
		{
			"match": [{"gateways": ["mesh"], "port": 3306}],
			"route": [{"destination": {"host": _gw, "subset": "mysql", "port": {"number": 15443}}}],
		},
		{
			"match": [{"gateways": ["istio-system/egress-gateway"], "port": 15443}],
			"route": [_dest("mysql.fqdn.example", 13306)],
		},
	],
}

test_egr201_direct_mesh_route if {
	_deny("default", _direct_http) == {{
		"code": "EGR201",
		"field": "spec.http[0].route[0].destination.host",
		"message": `spec.http[0].route[0].destination.host: mesh traffic to external host "test.com" must go through the egress gateway "istio-egressgateway.istio-system.svc.cluster.local", not to "test.com"`,
	}}
}

test_egr201_direct_tls_and_tcp_routes if {
	_deny("default", _direct_tls) == {{
		"code": "EGR201",
		"field": "spec.tls[0].route[0].destination.host",
		"message": `spec.tls[0].route[0].destination.host: mesh traffic to external host "istio.io" must go through the egress gateway "istio-egressgateway.istio-system.svc.cluster.local", not to "istio.io"`,
	}}
	{v.field | some v in _deny("default", _direct_tcp)} == {"spec.tcp[0].route[0].destination.host"}
}

test_egr201_external_host_to_cluster_local_destination if {
	_deny("default", {"hosts": ["test.com"], "http": [{"route": [_dest("proxy.default.svc.cluster.local", 3128)]}]}) == {{
		"code": "EGR201",
		"field": "spec.http[0].route[0].destination.host",
		"message": `spec.http[0].route[0].destination.host: mesh traffic to external host "test.com" must go through the egress gateway "istio-egressgateway.istio-system.svc.cluster.local", not to "proxy.default.svc.cluster.local"`,
	}}
}

test_egr201_match_gateways_mesh if {
	spec := {
		"hosts": ["test.com"],
		"gateways": ["mesh", "istio-system/egress-gateway"],
		"http": [{"match": [{"gateways": ["mesh"]}], "route": [_dest("test.com", 443)]}],
	}
	_codes("default", spec) == {"EGR201"}
}

test_egr201_gateway_leg_allowed if {
	spec := {
		"hosts": ["test.com"],
		"gateways": ["istio-system/egress-gateway"],
		"http": [{"route": [_dest("test.com", 443)]}],
	}
	_deny("default", spec) == set()
	_intents("default", spec) == set()
}

test_egr201_gateway_destination_forms if {
	every host in [_gw, "istio-egressgateway.istio-system", "istio-egressgateway.istio-system.svc"] {
		not "EGR201" in _codes("default", {"hosts": ["test.com"], "http": [{"route": [_dest(host, 80)]}]})
	}
	every host in [_gw, "istio-egressgateway.istio-system.svc"] {
		_deny("default", {"hosts": ["test.com"], "http": [{"route": [_dest(host, 80)]}]}) == set()
	}
}

test_egr201_cluster_local_traffic_ignored if {
	spec := {"hosts": ["reviews"], "http": [{"route": [_dest("reviews.default.svc.cluster.local", 9080)]}]}
	_deny("default", spec) == set()
	_intents("default", spec) == set()
}

test_egr202_unallowed_host if {
	_deny("default", {"hosts": ["evil.example"], "http": [{"route": [_dest("evil.example", 80)]}]}) == {
		{
			"code": "EGR201",
			"field": "spec.http[0].route[0].destination.host",
			"message": `spec.http[0].route[0].destination.host: mesh traffic to external host "evil.example" must go through the egress gateway "istio-egressgateway.istio-system.svc.cluster.local", not to "evil.example"`,
		},
		{
			"code": "EGR202",
			"field": "spec.hosts[0]",
			"message": `spec.hosts[0]: external host "evil.example" is not allowed for namespace "default"`,
		},
		{
			"code": "EGR202",
			"field": "spec.http[0].route[0].destination.host",
			"message": `spec.http[0].route[0].destination.host: external host "evil.example" is not allowed for namespace "default"`,
		},
	}
}

test_egr202_unallowed_port if {
	_deny("default", {"hosts": ["test.com"], "http": [{"route": [_dest("test.com", 8443)]}]}) == {
		{
			"code": "EGR201",
			"field": "spec.http[0].route[0].destination.host",
			"message": `spec.http[0].route[0].destination.host: mesh traffic to external host "test.com" must go through the egress gateway "istio-egressgateway.istio-system.svc.cluster.local", not to "test.com"`,
		},
		{
			"code": "EGR202",
			"field": "spec.http[0].route[0].destination.port.number",
			"message": `spec.http[0].route[0].destination.port.number: port 8443 of external host "test.com" is not allowed for namespace "default"`,
		},
	}
}

test_egr202_allowed_ports if {
	every port in [80, 443] {
		_codes("default", {"hosts": ["test.com"], "http": [{"route": [_dest("test.com", port)]}]}) == {"EGR201"}
	}

	# no port given
	_codes("default", {"hosts": ["test.com"], "http": [{"route": [{"destination": {"host": "test.com"}}]}]}) == {"EGR201"}
}

test_egr202_namespace_restriction if {
	{v.field | some v in _deny("other", _legs_http); v.code == "EGR202"} == {"spec.hosts[0]", "spec.http[1].route[0].destination.host"}
	_deny("default", _legs_http) == set()
}

test_egr202_gateway_bound_host_not_checked if {
	# a VirtualService only for the gateway is judged by its destinations
	spec := {
		"hosts": ["evil.example"],
		"gateways": ["istio-system/egress-gateway"],
		"http": [{"route": [_dest("test.com", 443)]}],
	}
	_deny("default", spec) == set()
}

test_egr202_gateway_bound_destination_checked if {
	spec := {
		"hosts": ["test.com"],
		"gateways": ["istio-system/egress-gateway"],
		"http": [{"route": [_dest("evil.example", 443)]}],
	}
	_deny("default", spec) == {{
		"code": "EGR202",
		"field": "spec.http[0].route[0].destination.host",
		"message": `spec.http[0].route[0].destination.host: external host "evil.example" is not allowed for namespace "default"`,
	}}
}

test_egr202_wildcard_entry if {
	spec := {"hosts": ["*.wikipedia.org"], "tls": [{
		"match": [{"port": 443, "sniHosts": ["en.wikipedia.org", "*.wikipedia.org"]}],
		"route": [_dest("*.wikipedia.org", 443)],
	}]}
	_codes("any", spec) == {"EGR201"}
	_intents("any", spec) == {_intent("tls", 0, 443, "wildcard", [443])}

	bare := {"hosts": ["wikipedia.org"], "tls": [{
		"match": [{"port": 443, "sniHosts": ["wikipedia.org"]}],
		"route": [_dest("wikipedia.org", 443)],
	}]}
	{v.field | some v in _deny("any", bare); v.code == "EGR202"} == {"spec.hosts[0]", "spec.tls[0].route[0].destination.host"}
	_intents("any", bare) == set()
}

test_intent_http_with_origination if {
	_intents("default", _direct_http) == {_intent("http", 0, 80, "", [443])}
}

test_intent_http_without_origination_keeps_port if {
	_intents("any", {"hosts": ["istio.io"], "http": [{"route": [_dest("istio.io", 80)]}]}) == {_intent("http", 0, 80, "istio-io", [80])}
}

test_intent_tls_passthrough if {
	_intents("any", _direct_tls) == {_intent("tls", 0, 443, "istio-io", [443])}
}

test_intent_tls_port_from_destination if {
	spec := {"hosts": ["istio.io"], "tls": [{"match": [{"sniHosts": ["istio.io"]}], "route": [_dest("istio.io", 443)]}]}
	_intents("any", spec) == {_intent("tls", 0, 443, "istio-io", [443])}
}

test_intent_tcp if {
	_intents("any", _direct_tcp) == {_intent("tcp", 0, 15443, "mysql", [13306])}
}

test_intent_per_route_index_and_destination if {
	spec := {"hosts": ["istio.io", "reviews"], "http": [
		{"match": [{"uri": {"prefix": "/reviews"}}], "route": [_dest("reviews", 9080)]},
		{"route": [
			{"destination": {"host": "istio.io", "port": {"number": 80}}, "weight": 80},
			{"destination": {"host": "istio.io", "port": {"number": 443}}, "weight": 20},
		]},
	]}
	_intents("any", spec) == {_intent("http", 1, 80, "istio-io", [80, 443])}
}

test_no_intent_for_unallowed_destination if {
	spec := {"hosts": ["istio.io", "evil.example"], "http": [{"route": [
		{"destination": {"host": "istio.io", "port": {"number": 80}}, "weight": 50},
		{"destination": {"host": "evil.example", "port": {"number": 80}}, "weight": 50},
	]}]}
	_intents("any", spec) == set()
	_intents("other", _direct_http) == set()
	_intents("default", {"hosts": ["test.com"], "http": [{"route": [_dest("test.com", 8443)]}]}) == set()
}

test_no_intent_for_gateway_leg_only if {
	_intents("default", {"hosts": ["test.com"], "http": [{"route": [_dest(_gw, 80)]}]}) == set()
}

test_egr203_mirror_to_external_host if {
	spec := object.union(_legs_http, {"http": [
		object.union(_legs_http.http[0], {"mirror": {"host": "copy.example.com"}, "mirrors": [
			{"destination": {"host": "reviews.default.svc.cluster.local"}},
			{"destination": {"host": "test.com", "port": {"number": 443}}, "percentage": {"value": 5}},
		]}),
		_legs_http.http[1],
	]})
	{v | some v in _deny("default", spec); v.code == "EGR203"} == {
		{
			"code": "EGR203",
			"field": "spec.http[0].mirror.host",
			"message": `spec.http[0].mirror.host: mesh traffic mirrored to external host "copy.example.com" bypasses the egress gateway "istio-egressgateway.istio-system.svc.cluster.local"`,
		},
		{
			"code": "EGR203",
			"field": "spec.http[0].mirrors[1].destination.host",
			"message": `spec.http[0].mirrors[1].destination.host: mesh traffic mirrored to external host "test.com" bypasses the egress gateway "istio-egressgateway.istio-system.svc.cluster.local"`,
		},
	}
}

test_egr203_mirror_at_the_gateway_or_in_cluster_allowed if {
	# From the gateway leg, the copy leaves through the gateway; to a cluster
	# name or the gateway Service, it never leaves.
	spec := object.union(_legs_http, {"http": [
		object.union(_legs_http.http[0], {"mirror": {"host": "reviews"}, "mirrors": [{"destination": {"host": _gw}}]}),
		object.union(_legs_http.http[1], {"mirror": {"host": "copy.example.com"}}),
	]})
	not "EGR203" in _codes("default", spec)
}

test_egr203_direct_route_split_keeps_the_mirror_denied if {
	# The mesh leg of a split keeps the route's mirror: the object stays
	# denied after mutation.
	spec := {"hosts": ["test.com"], "http": [{"route": [_dest("test.com", 80)], "mirror": {"host": "copy.example.com"}}]}
	"EGR203" in _codes("default", spec)
	count(_intents("default", spec)) == 1
}

test_two_legs_are_compliant_and_idempotent if {
	every spec in [_legs_http, _legs_tls, _legs_tcp] {
		_deny("default", spec) == set()
		_intents("default", spec) == set()
	}
}

test_other_kinds_ignored if {
	out := virtualservice.deny with input as object.union(_input("default", _direct_http), {"kind": {"kind": "DestinationRule"}})
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
	out == set()
}

test_cluster_local_name_made_external_by_inventory if {
	spec := {"hosts": ["nas.office.local"], "http": [{"route": [_dest("nas.office.local", 80)]}]}
	_deny("default", spec) == set()
	codes := {v.code | some v in virtualservice.deny} with input as _input("default", spec)
		with data.config as _config
		with data.inventory as {
			"serviceEntries": [{"namespace": "default", "name": "nas", "hosts": ["nas.office.local"], "location": "MESH_EXTERNAL"}],
			"externalHosts": {"nas.office.local": true},
		}
	codes == {"EGR201", "EGR202"}
}

# The gateway Service written as service.namespace is neither external nor
# unallowed.
test_gateway_short_forms_no_violations if {
	every host in ["istio-egressgateway.istio-system", "istio-egressgateway.istio-system.svc", _gw] {
		count(_deny("default", {"hosts": ["test.com"], "http": [{"route": [_dest(host, 80)]}]})) == 0
	}
}

# A match without gateways applies to the object's gateways, mesh included.
test_egr201_match_without_gateways_inherits_mesh if {
	spec := {
		"hosts": ["test.com"],
		"gateways": ["mesh", "istio-system/egress-gateway"],
		"http": [{
			"match": [{"gateways": ["istio-system/egress-gateway"]}, {"uri": {"prefix": "/"}}],
			"route": [_dest("test.com", 443)],
		}],
	}
	"EGR201" in _codes("default", spec)
	count(_intents("default", spec)) == 1
}

# Deletions: the object deleted is input.oldObject.
_two_leg := {
	"hosts": ["test.com"],
	"gateways": ["istio-system/egress-gateway", "mesh"],
	"http": [
		{"match": [{"gateways": ["mesh"], "port": 80}], "route": [_dest(_gw, 80)]},
		{"match": [{"gateways": ["istio-system/egress-gateway"], "port": 80}], "route": [_dest("test.com", 443)]},
	],
}

_registered := {
	"serviceEntries": [
		{"namespace": "default", "name": "test-com", "hosts": ["test.com"], "location": "MESH_EXTERNAL"},
		{"namespace": "istio-system", "name": "wildcard", "hosts": ["*.wikipedia.org"]},
	],
	"externalHosts": {"test.com": true},
	"externalSuffixIndex": {".wikipedia.org": true},
}

_delete(spec, user, inventory) := out if {
	out := virtualservice.deny with input as {
		"operation": "DELETE",
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
		"namespace": "default",
		"name": "x",
		"userInfo": {"username": user},
		"object": null,
		"oldObject": {"metadata": {"name": "x", "namespace": "default"}, "spec": spec},
	}
		with data.config as _config
		with data.inventory as inventory
}

test_egr204_deleting_the_gateway_route if {
	_delete(_two_leg, "alice", _registered) == {{
		"code": "EGR204",
		"field": "spec.http[0]",
		"message": `spec.http[0]: deleting the route of external host "test.com" through the egress gateway while a ServiceEntry still registers it would let the sidecars reach it directly; delete the ServiceEntry first`,
	}}
}

test_egr204_tls_by_sni_and_wildcards if {
	spec := {
		"hosts": ["*.wikipedia.org"],
		"gateways": ["mesh", "istio-system/egress-gateway"],
		"tls": [{"match": [{"gateways": ["mesh"], "port": 443, "sniHosts": ["en.wikipedia.org"]}], "route": [_dest(_gw, 443)]}],
	}
	{v.field | some v in _delete(spec, "alice", _registered)} == {"spec.tls[0]"}
}

test_egr204_once_the_service_entry_is_gone if {
	_delete(_two_leg, "alice", {"serviceEntries": [], "externalHosts": {}, "externalSuffixIndex": {}}) == set()
	_delete(_two_leg, "alice", {"serviceEntries": []}) == set()
}

test_egr204_kubernetes_cleanup if {
	_delete(_two_leg, "system:serviceaccount:kube-system:namespace-controller", _registered) == set()
	_delete(_two_leg, "system:serviceaccount:kube-system:generic-garbage-collector", _registered) == set()
}

test_egr204_other_routes_deleted_freely if {
	# a direct route (the sidecars already go direct), a gateway leg, an
	# internal service
	_delete(_direct_http, "alice", _registered) == set()
	_delete({"hosts": ["test.com"], "gateways": ["istio-system/egress-gateway"], "http": [{"route": [_dest("test.com", 443)]}]}, "alice", _registered) == set()
	_delete({"hosts": ["reviews"], "http": [{"route": [_dest("reviews", 9080)]}]}, "alice", _registered) == set()
}

test_egr204_not_on_create if {
	# the same object written is checked by the other rules only
	not "EGR204" in _codes("default", _two_leg)
}
