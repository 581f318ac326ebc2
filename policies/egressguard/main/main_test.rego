package egressguard.main_test

import data.egressguard.main

_config := {
	"gateway": {
		"namespace": "istio-system",
		"service": "istio-egressgateway",
		"gateway": "istio-system/egress-gateway",
		"ports": {"http": 80, "tcp": 15443},
	},
	"gatewayHost": "istio-egressgateway.istio-system.svc.cluster.local",
	"gatewayNames": {
		"istio-egressgateway.istio-system.svc.cluster.local": true,
		"istio-egressgateway.istio-system": true,
		"istio-egressgateway.istio-system.svc": true,
	},
	"serviceSuffix": ".svc.cluster.local",
	"enforcement": "deny",
	"exemptNamespaces": ["kube-system", "istio-system"],
	"clusterDomain": "cluster.local",
	"kinds": [
		{"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry", "resource": "serviceentries"},
		{"group": "networking.istio.io", "version": "v1", "kind": "VirtualService", "resource": "virtualservices"},
		{"group": "networking.istio.io", "version": "v1", "kind": "DestinationRule", "resource": "destinationrules"},
	],
	"allow": [{
		"hosts": ["test.com"], "ports": [80, 443],
		"origination": {"mode": "MUTUAL", "port": 443, "credentialName": "test.client", "sni": "test.com"},
	}],
}

_inventory := {"serviceEntries": []}

_input(kind, ns, spec) := {
	"operation": "CREATE",
	"kind": {"group": "networking.istio.io", "version": "v1", "kind": kind},
	"namespace": ns,
	"name": "x",
	"dryRun": false,
	"userInfo": {"username": "alice"},
	"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
}

# A direct mesh route to an allowed host (one EGR201, one intent) that also
# names an unknown host (EGR202).
_vs := {"hosts": ["test.com", "evil.example"], "http": [{"route": [{"destination": {"host": "test.com", "port": {"number": 80}}}]}]}

_dr := {"host": "test.com", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}

_violations(kind, ns, spec) := out if {
	out := main.violations with input as _input(kind, ns, spec)
		with data.config as _config
		with data.inventory as _inventory
}

_intents(kind, ns, spec) := out if {
	out := main.intents with input as _input(kind, ns, spec)
		with data.config as _config
		with data.inventory as _inventory
}

test_violations_carry_enforcement if {
	vs := _violations("VirtualService", "default", _vs)
	{[v.code, object.get(v, "action", "")] | some v in vs} == {["EGR201", ""], ["EGR202", ""]}
	count(vs) == 2
}

test_violations_from_every_rule_package if {
	{v.code | some v in _violations("ServiceEntry", "default", {"hosts": ["evil.example"]})} == {"EGR101"}
	{v.code | some v in _violations("DestinationRule", "default", _dr)} == {"EGR301", "EGR303"}
}

test_intents_from_every_rule_package if {
	_intents("VirtualService", "default", _vs) == {{
		"type": "route_via_gateway", "code": "EGR201", "section": "http", "index": 0,
		"gatewayHost": "istio-egressgateway.istio-system.svc.cluster.local",
		"gateway": "istio-system/egress-gateway", "gatewayPort": 80,
		"gatewaySubset": "", "targetPorts": [443], "listenerPort": 0,
	}}
	_intents("DestinationRule", "default", _dr) == {{
		"type": "originate_tls", "code": "EGR303", "port": 443, "mode": "MUTUAL",
		"credentialName": "test.client", "sni": "test.com",
	}}
}

test_exempt_namespace_produces_nothing if {
	every kind_spec in [["VirtualService", _vs], ["DestinationRule", _dr], ["ServiceEntry", {"hosts": ["evil.example"]}]] {
		_violations(kind_spec[0], "kube-system", kind_spec[1]) == set()
		_intents(kind_spec[0], "kube-system", kind_spec[1]) == set()
		_violations(kind_spec[0], "istio-system", kind_spec[1]) == set()
	}
}

test_unknown_kind_produces_nothing if {
	every kind in ["Gateway", "Sidecar", "ConfigMap"] {
		_violations(kind, "default", _vs) == set()
		_intents(kind, "default", _vs) == set()
	}
}

# A rule's own action is passed on; egress-guard resolves the others.
test_rule_action_kept if {
	vs := main.violations with input as _input("ServiceEntry", "default", {"hosts": ["test.com"]})
		with data.config as _config
		with data.inventory as _inventory
		with data.egressguard.rules.custom.deny as {
			{"code": "ACME001", "message": "spec: audited", "field": "spec", "action": "warn"},
			{"code": "ACME002", "message": "spec: denied"},
		}
	vs == {
		{"code": "ACME001", "message": "spec: audited", "field": "spec", "action": "warn"},
		{"code": "ACME002", "message": "spec: denied", "field": ""},
	}
}

test_platform_rule_ignored_in_exempt_namespace if {
	vs := main.violations with input as _input("ServiceEntry", "kube-system", {"hosts": ["test.com"]})
		with data.config as _config
		with data.inventory as _inventory
		with data.egressguard.rules.custom.deny as {{"code": "ACME002", "message": "spec: denied"}}
	vs == set()
}

# A kind the configuration polices reaches every rules package, whether or
# not the embedded pack reads it; the same kind name in another group does
# not.
test_policed_kinds_from_the_configuration if {
	config := object.union(_config, {"kinds": array.concat(_config.kinds, [{"group": "networking.istio.io", "version": "v1", "kind": "Gateway", "resource": "gateways"}])})
	gw := main.violations with input as _input("Gateway", "default", {"servers": []})
		with data.config as config
		with data.inventory as _inventory
		with data.egressguard.rules.custom.deny as {{"code": "ACME003", "message": "spec.servers: none"}}
	{v.code | some v in gw} == {"ACME003"}
	other := main.violations with input as object.union(_input("Gateway", "default", {"servers": []}), {"kind": {"group": "gateway.networking.k8s.io"}})
		with data.config as config
		with data.inventory as _inventory
		with data.egressguard.rules.custom.deny as {{"code": "ACME003", "message": "spec.servers: none"}}
	other == set()
}

# Workloads are policed unless the configuration turns them off; each workload
# kind's package reports the workload rules.
test_workloads if {
	pod := {
		"operation": "CREATE",
		"kind": {"group": "", "version": "v1", "kind": "Pod"},
		"namespace": "default",
		"name": "x",
		"userInfo": {"username": "alice"},
		"object": {"metadata": {"name": "x"}, "spec": {"hostNetwork": true, "containers": [{"name": "app"}]}},
	}
	config := object.union(_config, {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-system"], "groups": []}})
	{v.code | some v in main.violations} == {"EGR509"} with input as pod with data.config as config with data.inventory as _inventory
	deployment := object.union(pod, {"kind": {"group": "apps", "kind": "Deployment"}, "object": {"spec": {"template": pod.object}}})
	{v.field | some v in main.violations} == {"spec.template.spec.hostNetwork"} with input as deployment with data.config as config with data.inventory as _inventory
	count(main.violations) == 0 with input as pod with data.config as object.union(config, {"workloads": {"enabled": false}}) with data.inventory as _inventory
}
