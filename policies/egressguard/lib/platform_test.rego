package egressguard.lib_test

import data.egressguard.lib

_platform := {"platform": {
	"rootNamespace": "istio-system",
	"namespaces": ["istio-system", "istio-egress"],
	"users": ["system:serviceaccount:istio-system:istiod"],
	"groups": ["platform-admins"],
}}

_request(ns, user, groups) := {"namespace": ns, "userInfo": {"username": user, "groups": groups}}

test_platform_request if {
	lib.platform_request with input as _request("istio-egress", "alice", []) with data.config as _platform
	lib.platform_request with input as _request("team-a", "system:serviceaccount:istio-system:istiod", []) with data.config as _platform
	lib.platform_request with input as _request("team-a", "bob", ["system:authenticated", "platform-admins"]) with data.config as _platform
	not lib.platform_request with input as _request("team-a", "alice", ["system:authenticated"]) with data.config as _platform
	not lib.platform_request with input as {"namespace": "team-a"} with data.config as _platform
}

test_platform_owners if {
	lib.platform_owners == "the platform's namespaces (istio-system, istio-egress), users (system:serviceaccount:istio-system:istiod) or groups (platform-admins)" with data.config as _platform
	lib.platform_owners == "the platform's namespaces (istio-system), users (none) or groups (none)" with data.config as {"platform": {"namespaces": ["istio-system"], "groups": []}}
}

# The platform narrowed its namespaces: the root namespace is not its own.
_narrowed := {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-egress"], "users": [], "groups": ["platform-admins"]}}

_root(kind, ns, groups, spec) := out if {
	out := lib.root_namespace_violation with input as {
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": kind},
		"namespace": ns,
		"userInfo": {"username": "alice", "groups": groups},
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
	}
		with data.config as _narrowed
}

test_egr405_mesh_wide_in_the_root_namespace if {
	_root("VirtualService", "istio-system", [], {"hosts": ["test.com"]}) == {
		"code": "EGR405",
		"field": "metadata.namespace",
		"message": `metadata.namespace: a VirtualService in Istio's root namespace "istio-system" applies to the whole mesh; only the platform's namespaces (istio-egress), users (none) or groups (platform-admins) may write one`,
	}
	_root("DestinationRule", "istio-system", [], {"host": "test.com", "exportTo": ["*"]}).code == "EGR405"
	_root("Sidecar", "istio-system", [], {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}).code == "EGR405"
}

test_egr405_not_mesh_wide_or_elsewhere if {
	not _root("VirtualService", "istio-system", [], {"hosts": ["test.com"], "exportTo": ["."]})
	not _root("Sidecar", "istio-system", [], {"workloadSelector": {"labels": {"app": "x"}}})
	not _root("VirtualService", "team-a", [], {"hosts": ["test.com"]})
	not _root("ServiceEntry", "istio-system", [], {"hosts": ["test.com"]})
}

test_egr405_platform_may if {
	not _root("VirtualService", "istio-system", ["platform-admins"], {"hosts": ["test.com"]})
}
