package egressguard.rules.envoyfilter_test

import data.egressguard.rules.envoyfilter

_config := {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-system", "istio-egress"], "users": ["system:serviceaccount:istio-system:istiod"], "groups": []}}

_codes(kind, ns, user) := codes if {
	out := envoyfilter.deny with input as {
		"operation": "CREATE",
		"kind": {"group": "networking.istio.io", "version": "v1alpha3", "kind": kind},
		"namespace": ns,
		"name": "x",
		"userInfo": {"username": user, "groups": ["system:authenticated"]},
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": {}},
	}
		with data.config as _config
	codes := {v.code | some v in out}
}

test_EGR402_outside_the_platform if {
	_codes("EnvoyFilter", "team-a", "alice") == {"EGR402"}
}

test_EGR402_platform_namespaces_and_users if {
	_codes("EnvoyFilter", "istio-egress", "alice") == set()
	_codes("EnvoyFilter", "team-a", "system:serviceaccount:istio-system:istiod") == set()
}

test_EGR402_other_kinds if {
	_codes("ServiceEntry", "team-a", "alice") == set()
}
