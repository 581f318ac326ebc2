package egressguard.rules.sidecar_test

import data.egressguard.rules.sidecar

_config := {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-system"], "users": [], "groups": ["platform-admins"]}}

_deny(ns, groups, spec) := out if {
	out := sidecar.deny with input as {
		"operation": "CREATE",
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": "Sidecar"},
		"namespace": ns,
		"name": "x",
		"userInfo": {"username": "alice", "groups": groups},
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
	}
		with data.config as _config
}

test_egr401_allow_any if {
	_deny("team-a", ["system:authenticated"], {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}) == {{
		"code": "EGR401",
		"field": "spec.outboundTrafficPolicy.mode",
		"message": `spec.outboundTrafficPolicy.mode: "ALLOW_ANY" lets the sidecars reach any host directly, around the egress gateway; only the platform's namespaces (istio-system), users (none) or groups (platform-admins) may set it`,
	}}
}

test_egr401_registry_only_or_unset if {
	_deny("team-a", [], {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}) == set()
	_deny("team-a", [], {"egress": [{"hosts": ["./*"]}]}) == set()
}

test_egr401_platform_may if {
	_deny("istio-system", [], {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}) == set()
	_deny("team-a", ["platform-admins"], {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}) == set()
}
