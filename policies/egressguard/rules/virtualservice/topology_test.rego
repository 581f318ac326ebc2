package egressguard.rules.virtualservice_test

import data.egressguard.rules.virtualservice

# The cluster model of the tests: the egress gateway's Gateway, a
# gateway-subset DestinationRule, and ServiceEntries.
_gateway(servers) := {"metadata": {"name": "egress-gateway", "namespace": "istio-system"}, "spec": {"servers": servers}}

_server(port, protocol, hosts) := {"port": {"number": port, "protocol": protocol}, "hosts": hosts}

_se(ns, name, host, exports) := {"metadata": {"name": name, "namespace": ns}, "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "exportTo": exports}}

_dr(ns, name, subsets, exports) := {"metadata": {"name": name, "namespace": ns}, "spec": {"host": _gw, "subsets": [{"name": s} | some s in subsets], "exportTo": exports}}

_inventory(gateways, drs, ses) := {
	"serviceEntries": [],
	"objects": {
		"Gateway": {concat("/", [g.metadata.namespace, g.metadata.name]): g | some g in gateways},
		"DestinationRule": {concat("/", [d.metadata.namespace, d.metadata.name]): d | some d in drs},
		"ServiceEntry": {concat("/", [s.metadata.namespace, s.metadata.name]): s | some s in ses},
	},
	"byHost": {
		"DestinationRule": {h: [d | some d in drs; d.spec.host == h] | some d0 in drs; h := d0.spec.host},
		"ServiceEntry": {h: [s | some s in ses; s.spec.hosts[0] == h] | some s0 in ses; h := s0.spec.hosts[0]},
	},
}

_world := _inventory(
	[_gateway([_server(80, "HTTPS", ["*"]), _server(8443, "TLS", ["*.wikipedia.org"])])],
	[_dr("istio-system", "egressgateway", ["istio-io"], []), _origination_rule("default", [], "MUTUAL")],
	[_se("default", "test-com", "test.com", ["."]), _se("istio-system", "wikipedia", "*.wikipedia.org", [])],
)

_deny_in(inv, ns, spec) := out if {
	out := virtualservice.deny with input as _input(ns, spec)
		with data.config as _config
		with data.inventory as inv
}

_codes_in(inv, ns, spec) := {v.code | some v in _deny_in(inv, ns, spec)}

_legs(gateway, port) := {
	"hosts": ["test.com"],
	"gateways": ["mesh", gateway],
	"http": [
		{"match": [{"gateways": ["mesh"], "port": 80}], "route": [_dest(_gw, 80)]},
		{"match": [{"gateways": [gateway], "port": port}], "route": [_dest("test.com", 443)]},
	],
}

test_egr601_gateway_leg_on_another_gateway if {
	vs := _legs("egress-gateway", 80)
	some v in _deny("default", vs)
	v == {
		"code": "EGR601",
		"field": "spec.http[1]",
		"message": `spec.http[1]: the gateway leg to external host "test.com" binds to egress-gateway, not to the egress gateway's Gateway "istio-system/egress-gateway"`,
	}
	not "EGR601" in _codes("default", _legs("istio-system/egress-gateway", 80))
	not "EGR601" in _codes("istio-system", _legs("egress-gateway", 80))
}

test_egr602_603_the_gateway_and_its_server if {
	vs := _legs("istio-system/egress-gateway", 80)
	_codes_in(_world, "default", vs) == set()

	# Without a model nothing is said of existence.
	_codes("default", vs) == set()
	some missing in _deny_in(_inventory([], [], [_se("default", "test-com", "test.com", [])]), "default", vs)
	missing == {
		"code": "EGR602",
		"field": "spec.http[1]",
		"message": `spec.http[1]: the gateway leg to external host "test.com" binds to Gateway "istio-system/egress-gateway", which does not exist`,
		"action": "warn",
	}
	some wrong in _deny_in(_world, "default", _legs("istio-system/egress-gateway", 8080))
	wrong.code == "EGR603"
	wrong.message == `spec.http[1]: Gateway "istio-system/egress-gateway" has no HTTP server on port 8080 for host "test.com", which the gateway leg needs`
}

test_egr604_gateway_subset if {
	leg := {"hosts": ["istio.io"], "tls": [{"match": [{"port": 443, "sniHosts": ["istio.io"]}], "route": [{"destination": {"host": _gw, "subset": "istio-io"}}]}]}
	not "EGR604" in _codes_in(_world, "default", leg)
	unknown := json.patch(leg, [{"op": "replace", "path": "/tls/0/route/0/destination/subset", "value": "other"}])
	some v in _deny_in(_world, "default", unknown)
	v.code == "EGR604"
	v.message == `spec.tls[0].route[0].destination.subset: no DestinationRule for "istio-egressgateway.istio-system.svc.cluster.local" that namespace "default" sees defines subset "other" (DestinationRule istio-system/egressgateway applies, without it)`

	# A rule exported elsewhere is not seen.
	hidden := _inventory([], [_dr("istio-system", "egressgateway", ["istio-io"], ["team-a"])], [])
	"EGR604" in _codes_in(hidden, "default", leg)

	# The client's namespace comes first, even without the subset.
	shadowed := _inventory([], [_dr("default", "mine", [], []), _dr("istio-system", "egressgateway", ["istio-io"], [])], [])
	"EGR604" in _codes_in(shadowed, "default", leg)
}

test_egr605_registered_where_seen if {
	vs := _legs("istio-system/egress-gateway", 80)
	not "EGR605" in _codes_in(_world, "default", vs)
	some v in _deny_in(_world, "team-a", vs)
	v.code == "EGR605"
	v.message == `spec.hosts[0]: no ServiceEntry that namespace "team-a" sees registers external host "test.com": under REGISTRY_ONLY its traffic is dropped`

	# A wildcard entry exported everywhere registers its hosts.
	wiki := {"hosts": ["en.wikipedia.org"], "tls": [{"match": [{"port": 443, "sniHosts": ["en.wikipedia.org"]}], "route": [_dest(_gw, 443)]}]}
	not "EGR605" in _codes_in(_world, "team-a", wiki)
}

# Under dry-run enforcement the existence checks keep it: no warning.
test_existence_action_follows_enforcement if {
	vs := _legs("istio-system/egress-gateway", 80)
	some v in virtualservice.deny with input as _input("team-a", vs)
		with data.config as object.union(_config, {"enforcement": "dryrun"})
		with data.inventory as _world
	v.code == "EGR605"
	not v.action
}

# Routed through the gateway, a TLS leg matches on the Gateway's listener:
# the mesh leg's 443 reaches the server on 8443.
test_listener_port if {
	direct := {"hosts": ["en.wikipedia.org"], "tls": [{"match": [{"port": 443, "sniHosts": ["en.wikipedia.org"]}], "route": [_dest("en.wikipedia.org", 443)]}]}
	intents := virtualservice.intents with input as _input("default", direct)
		with data.config as _config
		with data.inventory as _world
	some intent in intents
	intent.gatewayPort == 443
	intent.listenerPort == 8443
	http := _legs("istio-system/egress-gateway", 80)
	some same in virtualservice.intents with input as _input("default", {"hosts": ["test.com"], "http": [{"route": [_dest("test.com", 80)]}]})
		with data.config as _config
		with data.inventory as _world
	same.listenerPort == 0
}

# EGR606: test.com's origination is MUTUAL on 443: a gateway leg to port 80
# would leave the gateway in plain text.
test_egr606_gateway_leg_off_the_origination_port if {
	plain := json.patch(_legs("istio-system/egress-gateway", 80), [{"op": "replace", "path": "/http/1/route/0/destination/port/number", "value": 80}])
	some v in _deny("default", plain)
	v == {
		"code": "EGR606",
		"field": "spec.http[1].route[0].destination.port.number",
		"message": `spec.http[1].route[0].destination.port.number: the platform originates MUTUAL tls to external host "test.com" on port 443; the gateway leg sends it to port 80, in plain text`,
	}
	not "EGR606" in _codes("default", _legs("istio-system/egress-gateway", 80))
}

# EGR608: the origination DestinationRule must be one the gateway sees.
_origination_rule(ns, exports, mode) := {"metadata": {"name": "originate", "namespace": ns}, "spec": {
	"host": "test.com", "exportTo": exports,
	"trafficPolicy": {"portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": mode, "credentialName": "test.client"}}]},
}}

_with_rule(r) := object.union(_world, {"byHost": {"DestinationRule": {"test.com": [r]}}, "objects": {"DestinationRule": {"x/originate": r}}})

test_egr608_origination_rule_seen_by_the_gateway if {
	vs := _legs("istio-system/egress-gateway", 80)
	not "EGR608" in _codes_in(_with_rule(_origination_rule("default", [], "MUTUAL")), "default", vs)
	"EGR608" in _codes_in(_with_rule(_origination_rule("default", ["."], "MUTUAL")), "default", vs)
	"EGR608" in _codes_in(_with_rule(_origination_rule("istio-system", [], "SIMPLE")), "default", vs)
	some v in _deny_in(_inventory([], [], []), "default", vs)
	v.code == "EGR608"
	v.message == `spec.http[1].route[0].destination.host: no DestinationRule that the gateway's namespace "istio-system" sees originates MUTUAL tls to external host "test.com" on port 443`
}

# The origination_port intent fixes EGR606: the leg goes to the origination
# port.
test_origination_port_intent if {
	plain := json.patch(_legs("istio-system/egress-gateway", 80), [{"op": "replace", "path": "/http/1/route/0/destination/port/number", "value": 80}])
	some intent in _intents("default", plain)
	intent == {"type": "origination_port", "code": "EGR606", "leg": {"section": "http", "index": 1, "route": 0}, "to": 443}
	every other in _intents("default", _legs("istio-system/egress-gateway", 80)) {
		other.type != "origination_port"
	}
}

# A leg to a port the allow entry does not allow is not rewritten: denied.
test_origination_port_not_for_a_port_not_allowed if {
	other := json.patch(_legs("istio-system/egress-gateway", 80), [{"op": "replace", "path": "/http/1/route/0/destination/port/number", "value": 5432}])
	every intent in _intents("default", other) {
		intent.type != "origination_port"
	}
	{"EGR202", "EGR606"} & _codes("default", other) == {"EGR202", "EGR606"}
}
