package egressguard.lib_test

import data.egressguard.lib

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
		{"hosts": ["*.wikipedia.org"], "ports": [443], "gatewaySubset": "wildcard"},
		{"hosts": ["istio.io"]},
		{"hosts": ["ldap.corp.local"], "ports": [636]},
	],
}

_inventory := {
	"serviceEntries": [
		{"namespace": "default", "name": "nas", "hosts": ["nas.office.local"], "location": "MESH_EXTERNAL"},
		{"namespace": "default", "name": "db", "hosts": ["db.legacy.local"], "location": "MESH_INTERNAL"},
		{"namespace": "default", "name": "printer", "hosts": ["printer.svc"]},
		{"namespace": "default", "name": "lan", "hosts": ["*.lan.office.local"], "location": "MESH_EXTERNAL"},
	],
	"externalHosts": {"nas.office.local": true, "printer.svc": true},
	"externalSuffixes": [".lan.office.local"],
}

test_cluster_local if {
	every host in ["reviews", "reviews.default.svc", "reviews.default.svc.cluster.local", "printer.lan.local"] {
		lib.cluster_local(host) with data.config as _config
	}
	every host in ["test.com", "en.wikipedia.org", "reviews.default.svc.cluster.example"] {
		not lib.cluster_local(host) with data.config as _config
	}
}

test_cluster_local_custom_domain if {
	lib.cluster_local("reviews.default.svc.corp.internal") with data.config as object.union(_config, {"clusterDomain": "corp.internal", "serviceSuffix": ".svc.corp.internal"})
	not lib.cluster_local("reviews.default.svc.corp.internal") with data.config as _config
}

test_covers_exact if {
	lib.covers("test.com", "test.com")
	not lib.covers("test.com", "www.test.com")
	not lib.covers("test.com", "test.co")
}

test_covers_wildcard if {
	lib.covers("*.wikipedia.org", "en.wikipedia.org")
	lib.covers("*.wikipedia.org", "*.wikipedia.org")
	lib.covers("*.wikipedia.org", "de.m.wikipedia.org")
	not lib.covers("*.wikipedia.org", "wikipedia.org")
	not lib.covers("*.wikipedia.org", "enwikipedia.org")
	not lib.covers("*.wikipedia.org", "*.org")
}

test_external_plain if {
	every host in ["test.com", "unknown.example", "en.wikipedia.org"] {
		lib.external(host) with data.config as _config with data.inventory as _inventory
	}
	every host in ["reviews", "reviews.default.svc.cluster.local", "other.corp.local"] {
		not lib.external(host) with data.config as _config with data.inventory as _inventory
	}
}

test_external_cluster_local_named_by_allow if {
	lib.external("ldap.corp.local") with data.config as _config with data.inventory as _inventory
}

test_external_cluster_local_named_by_inventory if {
	lib.external("nas.office.local") with data.config as _config with data.inventory as _inventory

	# a ServiceEntry without a location is MESH_EXTERNAL
	lib.external("printer.svc") with data.config as _config with data.inventory as _inventory

	# and a wildcard covers the names under it
	lib.external("nas.lan.office.local") with data.config as _config with data.inventory as _inventory
	not lib.external("lan.office.local") with data.config as _config with data.inventory as _inventory
}

test_external_not_by_mesh_internal_inventory if {
	not lib.external("db.legacy.local") with data.config as _config with data.inventory as _inventory
}

test_entries_namespace_restriction if {
	count(lib.entries("test.com", "default")) == 1 with data.config as _config
	lib.entries("test.com", "other") == [] with data.config as _config
	lib.allowed_host("test.com", "default") with data.config as _config
	not lib.allowed_host("test.com", "other") with data.config as _config
}

test_entries_wildcard if {
	lib.entries("en.wikipedia.org", "any") == [_config.allow[1]] with data.config as _config
	lib.allowed_host("*.wikipedia.org", "any") with data.config as _config
	not lib.allowed_host("wikipedia.org", "any") with data.config as _config
}

test_allowed_port if {
	lib.allowed_port("test.com", 443, "default") with data.config as _config
	not lib.allowed_port("test.com", 8443, "default") with data.config as _config
	not lib.allowed_port("test.com", 443, "other") with data.config as _config

	# port 0: no port given
	lib.allowed_port("test.com", 0, "default") with data.config as _config
	not lib.allowed_port("unknown.example", 0, "default") with data.config as _config

	# an entry without ports allows every port
	lib.allowed_port("istio.io", 8443, "any") with data.config as _config
}

test_origination if {
	lib.origination("test.com", "default") == _config.allow[0].origination with data.config as _config
	not lib.origination("test.com", "other") with data.config as _config
	not lib.origination("istio.io", "default") with data.config as _config
}

test_is_gateway_host if {
	every host in [
		"istio-egressgateway.istio-system.svc.cluster.local",
		"istio-egressgateway.istio-system.svc",
		"istio-egressgateway.istio-system",
	] {
		lib.is_gateway_host(host, "default") with data.config as _config
	}
	lib.is_gateway_host("istio-egressgateway", "istio-system") with data.config as _config
	not lib.is_gateway_host("istio-egressgateway", "default") with data.config as _config
	not lib.is_gateway_host("test.com", "default") with data.config as _config
}

test_mesh_route if {
	vs := {"spec": {"gateways": ["mesh", "egress-gateway"]}}
	lib.mesh_route(vs, {})
	lib.mesh_route({"spec": {}}, {"match": [{"port": 80}]})
	not lib.mesh_route(vs, {"match": [{"gateways": ["egress-gateway"]}]})
	not lib.mesh_route({"spec": {"gateways": ["egress-gateway"]}}, {"match": [{"port": 80}]})

	# A match without gateways applies to the object's gateways, mesh included.
	lib.mesh_route(vs, {"match": [{"gateways": ["istio-system/egress-gateway"]}, {"uri": {"prefix": "/"}}]})
	lib.mesh_route({"spec": {"gateways": ["egress-gateway"]}}, {"match": [{"gateways": ["mesh"]}]})
}

test_mesh_bound if {
	lib.mesh_bound({"spec": {}})
	lib.mesh_bound({"spec": {"gateways": ["mesh", "istio-system/egress-gateway"]}})
	not lib.mesh_bound({"spec": {"gateways": ["istio-system/egress-gateway"]}})
}

test_tls_strength if {
	lib.tls_strength("DISABLE") == 0
	lib.tls_strength("") == 0
	lib.tls_strength("SIMPLE") == 1
	lib.tls_strength("MUTUAL") == 2
	lib.tls_strength("ISTIO_MUTUAL") == 2
}
