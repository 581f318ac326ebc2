package egressguard.rules.destinationrule_test

import data.egressguard.rules.destinationrule

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
	"allow": [
		{
			"hosts": ["test.com"], "ports": [80, 443], "namespaces": ["default"],
			"origination": {"mode": "MUTUAL", "port": 443, "credentialName": "test.client", "sni": "test.com"},
		},
		{
			"hosts": ["api.example.com"], "ports": [443],
			"origination": {"mode": "SIMPLE", "port": 443, "sni": "api.example.com"},
		},
		{"hosts": ["istio.io"], "ports": [80, 443]},
	],
}

_input(ns, spec) := {
	"operation": "CREATE",
	"kind": {"group": "networking.istio.io", "version": "v1", "kind": "DestinationRule"},
	"namespace": ns,
	"name": "x",
	"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
}

_deny(ns, spec) := out if {
	out := destinationrule.deny with input as _input(ns, spec)
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
}

_intents(ns, spec) := out if {
	out := destinationrule.intents with input as _input(ns, spec)
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
}

_codes(ns, spec) := {v.code | some v in _deny(ns, spec)}

_fields(ns, spec, code) := {v.field | some v in _deny(ns, spec); v.code == code}

_tp(host, tls) := {"host": host, "trafficPolicy": {"tls": tls}}

_port_tls(host, port, tls) := {"host": host, "trafficPolicy": {"portLevelSettings": [{"port": {"number": port}, "tls": tls}]}}

_mutual := {"mode": "MUTUAL", "credentialName": "test.client", "sni": "test.com"}

_originate_test := {"type": "originate_tls", "code": "EGR303", "port": 443, "mode": "MUTUAL", "credentialName": "test.client", "sni": "test.com"}

_originate_api := {"type": "originate_tls", "code": "EGR303", "port": 443, "mode": "SIMPLE", "credentialName": "", "sni": "api.example.com"}

test_egr301_disabled_tls if {
	_deny("default", _tp("istio.io", {"mode": "DISABLE"})) == {{
		"code": "EGR301",
		"field": "spec.trafficPolicy.tls.mode",
		"message": `spec.trafficPolicy.tls.mode: tls mode "DISABLE" turns off tls to external host "istio.io"`,
	}}
}

test_egr301_every_tls_setting if {
	spec := {
		"host": "unknown.example",
		"trafficPolicy": {"portLevelSettings": [
			{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}},
			{"port": {"number": 8080}, "tls": {"mode": "DISABLE"}},
		]},
		"subsets": [{
			"name": "v1",
			"trafficPolicy": {
				"tls": {"mode": "DISABLE"},
				"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}],
			},
		}],
	}
	_fields("default", spec, "EGR301") == {
		"spec.trafficPolicy.portLevelSettings[1].tls.mode",
		"spec.subsets[0].trafficPolicy.tls.mode",
		"spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.mode",
	}
}

test_egr301_not_for_cluster_local_host if {
	_deny("default", _tp("reviews.default.svc.cluster.local", {"mode": "DISABLE"})) == set()
	_deny("default", _tp("reviews", {"mode": "DISABLE", "insecureSkipVerify": true})) == set()
}

test_egr301_not_for_tls if {
	every mode in ["SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] {
		_deny("default", _tp("istio.io", {"mode": mode})) == set()
	}
}

test_egr302_skip_verify if {
	_deny("default", _tp("istio.io", {"mode": "SIMPLE", "insecureSkipVerify": true})) == {{
		"code": "EGR302",
		"field": "spec.trafficPolicy.tls.insecureSkipVerify",
		"message": `spec.trafficPolicy.tls.insecureSkipVerify: "true" skips verification of external host "istio.io"`,
	}}
	_fields("default", _port_tls("istio.io", 443, {"mode": "SIMPLE", "insecureSkipVerify": true}), "EGR302") == {"spec.trafficPolicy.portLevelSettings[0].tls.insecureSkipVerify"}
}

test_egr302_verified if {
	_deny("default", _tp("istio.io", {"mode": "SIMPLE", "insecureSkipVerify": false})) == set()
	_deny("default", _tp("istio.io", {"mode": "SIMPLE", "caCertificates": "/etc/ca.pem"})) == set()
}

test_egr303_weaker_than_origination if {
	_deny("default", _tp("test.com", {"mode": "SIMPLE", "sni": "test.com"})) == {{
		"code": "EGR303",
		"field": "spec.trafficPolicy.tls.mode",
		"message": `spec.trafficPolicy.tls.mode: tls mode "SIMPLE" on port 443 of external host "test.com" is weaker than the required "MUTUAL"`,
	}}
}

test_egr303_port_level_setting_wins if {
	spec := {"host": "test.com", "trafficPolicy": {
		"tls": _mutual,
		"portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "DISABLE"}}],
	}}
	_deny("default", spec) == {
		{
			"code": "EGR301",
			"field": "spec.trafficPolicy.portLevelSettings[0].tls.mode",
			"message": `spec.trafficPolicy.portLevelSettings[0].tls.mode: tls mode "DISABLE" turns off tls to external host "test.com"`,
		},
		{
			"code": "EGR303",
			"field": "spec.trafficPolicy.portLevelSettings[0].tls.mode",
			"message": `spec.trafficPolicy.portLevelSettings[0].tls.mode: tls mode "DISABLE" on port 443 of external host "test.com" is weaker than the required "MUTUAL"`,
		},
	}
}

test_egr303_other_port_ignored if {
	spec := {"host": "test.com", "trafficPolicy": {
		"tls": _mutual,
		"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE"}}],
	}}
	_deny("default", spec) == set()
	_intents("default", spec) == set()
}

test_egr303_missing_tls if {
	_codes("default", {"host": "test.com"}) == {"EGR303"}
}

test_egr303_as_strong if {
	_deny("default", _tp("test.com", _mutual)) == set()
	_deny("default", _port_tls("test.com", 443, _mutual)) == set()
	_deny("default", _tp("api.example.com", {"mode": "SIMPLE", "sni": "api.example.com"})) == set()
}

test_egr303_stronger_is_never_weaker if {
	every mode in ["MUTUAL", "ISTIO_MUTUAL"] {
		_deny("default", _tp("api.example.com", {"mode": mode})) == set()
	}
}

test_egr303_namespace_restriction if {
	# test.com is allowed, with its origination, only in namespace default
	_deny("other", _tp("test.com", {"mode": "SIMPLE"})) == set()
	_intents("other", _tp("test.com", {"mode": "SIMPLE"})) == set()
}

test_intent_missing_tls if {
	_intents("default", {"host": "test.com"}) == {_originate_test}
	_intents("default", {"host": "api.example.com"}) == {_originate_api}
}

test_intent_weaker_tls if {
	_intents("default", _tp("test.com", {"mode": "SIMPLE", "sni": "test.com"})) == {_originate_test}
	_intents("default", _port_tls("test.com", 443, {"mode": "DISABLE"})) == {_originate_test}
}

test_intent_never_downgrades if {
	every mode in ["MUTUAL", "ISTIO_MUTUAL"] {
		_intents("default", _tp("api.example.com", {"mode": mode})) == set()
		_intents("default", _port_tls("api.example.com", 443, {"mode": mode})) == set()
	}
}

test_intent_fills_missing_credential_or_sni if {
	_intents("default", _tp("test.com", {"mode": "MUTUAL", "credentialName": "test.client"})) == {_originate_test}
	_intents("default", _tp("test.com", {"mode": "MUTUAL", "sni": "test.com"})) == {_originate_test}
	_intents("default", _tp("api.example.com", {"mode": "SIMPLE"})) == {_originate_api}
}

test_no_intent_when_complete if {
	_intents("default", _tp("test.com", _mutual)) == set()
	_intents("default", _port_tls("test.com", 443, _mutual)) == set()
	_intents("default", _tp("api.example.com", {"mode": "SIMPLE", "sni": "api.example.com"})) == set()

	# the platform's values never replace the owner's
	_intents("default", _tp("test.com", {"mode": "MUTUAL", "credentialName": "mine", "sni": "mine.test.com"})) == set()
}

test_no_intent_without_origination if {
	_intents("default", {"host": "istio.io"}) == set()
	_intents("default", {"host": "unknown.example"}) == set()
	_intents("default", {"host": "reviews"}) == set()
}

test_other_kinds_ignored if {
	out := destinationrule.deny with input as object.union(_input("default", _tp("istio.io", {"mode": "DISABLE"})), {"kind": {"kind": "ServiceEntry"}})
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
	out == set()
}

test_cluster_local_name_made_external_by_allow if {
	_deny("default", _tp("ldap.corp.local", {"mode": "DISABLE"})) == set()
	out := destinationrule.deny with input as _input("default", _tp("ldap.corp.local", {"mode": "DISABLE"}))
		with data.config as object.union(_config, {"allow": [{"hosts": ["ldap.corp.local"], "ports": [636]}]})
		with data.inventory as {"serviceEntries": []}
	{v.field | some v in out; v.code == "EGR301"} == {"spec.trafficPolicy.tls.mode"}
}

# A port-level setting does not inherit the traffic policy's TLS: the port
# runs without TLS, which is weaker than the origination.
test_egr303_port_level_setting_without_tls if {
	spec := {"host": "test.com", "trafficPolicy": {
		"tls": _mutual,
		"portLevelSettings": [{"port": {"number": 443}, "connectionPool": {"tcp": {"maxConnections": 10}}}],
	}}
	_fields("default", spec, "EGR303") == {"spec.trafficPolicy.portLevelSettings[0].tls.mode"}
	_intents("default", spec) == {_originate_test}
}

test_egr303_field_without_traffic_policy if {
	_fields("default", {"host": "test.com"}, "EGR303") == {"spec.trafficPolicy.tls.mode"}
}

test_egr303_first_port_level_setting_of_a_port if {
	weak_first := {"host": "test.com", "trafficPolicy": {"portLevelSettings": [
		{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}},
		{"port": {"number": 443}, "tls": _mutual},
	]}}
	_fields("default", weak_first, "EGR303") == {"spec.trafficPolicy.portLevelSettings[0].tls.mode"}
	strong_first := {"host": "test.com", "trafficPolicy": {"portLevelSettings": [
		{"port": {"number": 443}, "tls": _mutual},
		{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}},
	]}}
	_deny("default", strong_first) == set()
	_intents("default", strong_first) == set()
}

_with_subset(subset_policy) := {"host": "test.com", "trafficPolicy": {"tls": _mutual}, "subsets": [
	{"name": "v1", "labels": {"version": "v1"}},
	{"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": subset_policy},
]}

test_egr303_subset_tls_weaker if {
	_deny("default", _with_subset({"tls": {"mode": "SIMPLE", "sni": "test.com"}})) == {{
		"code": "EGR303",
		"field": "spec.subsets[1].trafficPolicy.tls.mode",
		"message": `spec.subsets[1].trafficPolicy.tls.mode: tls mode "SIMPLE" on port 443 of external host "test.com" is weaker than the required "MUTUAL"`,
	}}

	# The destination's TLS is complete: only the subset is at fault, and no
	# mutation of the destination fixes it.
	_intents("default", _with_subset({"tls": {"mode": "SIMPLE"}})) == set()
}

test_egr303_subset_port_level_setting if {
	spec := _with_subset({
		"tls": _mutual,
		"portLevelSettings": [
			{"port": {"number": 80}, "tls": _mutual},
			{"port": {"number": 443}, "loadBalancer": {"simple": "ROUND_ROBIN"}},
		],
	})

	# A port-level setting without tls means no TLS on that port.
	_deny("default", spec) == {{
		"code": "EGR303",
		"field": "spec.subsets[1].trafficPolicy.portLevelSettings[1].tls.mode",
		"message": `spec.subsets[1].trafficPolicy.portLevelSettings[1].tls.mode: tls mode "DISABLE" on port 443 of external host "test.com" is weaker than the required "MUTUAL"`,
	}}
}

test_egr303_subset_overrides_a_weak_destination if {
	# The subset's own TLS is strong enough; the destination's is reported.
	spec := {"host": "test.com", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}, "subsets": [{"name": "v1", "trafficPolicy": {"tls": _mutual}}]}
	_fields("default", spec, "EGR303") == {"spec.trafficPolicy.tls.mode"}
}

test_egr303_subset_inherits if {
	_deny("default", _with_subset({"loadBalancer": {"simple": "LEAST_REQUEST"}})) == set()
	_deny("default", _with_subset({"tls": _mutual})) == set()
	_deny("default", _with_subset({"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE"}}]})) == set()
}
