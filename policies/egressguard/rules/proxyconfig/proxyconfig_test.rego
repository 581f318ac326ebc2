package egressguard.rules.proxyconfig_test

import data.egressguard.rules.proxyconfig

_config := {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-system", "istio-egress"], "users": ["system:serviceaccount:istio-system:istiod"], "groups": []}}

_codes(kind, ns, user) := codes if {
	out := proxyconfig.deny with input as {
		"operation": "CREATE",
		"kind": {"group": "networking.istio.io", "version": "v1beta1", "kind": kind},
		"namespace": ns,
		"name": "x",
		"userInfo": {"username": user, "groups": ["system:authenticated"]},
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": {}},
	}
		with data.config as _config
	codes := {v.code | some v in out}
}

test_EGR404_outside_the_platform if {
	_codes("ProxyConfig", "team-a", "alice") == {"EGR404"}
}

test_EGR404_platform_namespaces_and_users if {
	_codes("ProxyConfig", "istio-egress", "alice") == set()
	_codes("ProxyConfig", "team-a", "system:serviceaccount:istio-system:istiod") == set()
}

test_EGR404_other_kinds if {
	_codes("ServiceEntry", "team-a", "alice") == set()
}
