package egressguard.rules.wasmplugin_test

import data.egressguard.rules.wasmplugin

_config := {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-system", "istio-egress"], "users": ["system:serviceaccount:istio-system:istiod"], "groups": []}}

_codes(kind, ns, user) := codes if {
	out := wasmplugin.deny with input as {
		"operation": "CREATE",
		"kind": {"group": "extensions.istio.io", "version": "v1alpha1", "kind": kind},
		"namespace": ns,
		"name": "x",
		"userInfo": {"username": user, "groups": ["system:authenticated"]},
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": {}},
	}
		with data.config as _config
	codes := {v.code | some v in out}
}

test_EGR403_outside_the_platform if {
	_codes("WasmPlugin", "team-a", "alice") == {"EGR403"}
}

test_EGR403_platform_namespaces_and_users if {
	_codes("WasmPlugin", "istio-egress", "alice") == set()
	_codes("WasmPlugin", "team-a", "system:serviceaccount:istio-system:istiod") == set()
}

test_EGR403_other_kinds if {
	_codes("ServiceEntry", "team-a", "alice") == set()
}
