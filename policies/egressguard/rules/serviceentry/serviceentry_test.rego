package egressguard.rules.serviceentry_test

import data.egressguard.rules.serviceentry

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
		{"hosts": ["test.com"], "ports": [80, 443], "namespaces": ["default"], "addresses": ["192.0.2.10", "203.0.113.0/24", "2001:db8::/32"]},
		{"hosts": ["db.example"], "namespaces": ["team-a"], "addresses": ["198.51.100.0/24"]},
		{"hosts": ["db.example"], "namespaces": ["team-b"]},
		{"hosts": ["*.wikipedia.org"], "ports": [443]},
		{"hosts": ["istio.io"]},
	],
}

_deny(ns, spec) := out if {
	out := serviceentry.deny with input as {
		"operation": "CREATE",
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
		"namespace": ns,
		"name": "x",
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
	}
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
}

_codes(ns, spec) := {v.code | some v in _deny(ns, spec)}

_ports(numbers) := [{"number": n, "name": sprintf("p%d", [n]), "protocol": "TLS"} | some n in numbers]

test_egr101_unallowed_host if {
	_deny("default", {"hosts": ["test.com", "evil.example"], "location": "MESH_EXTERNAL", "ports": _ports([443])}) == {{
		"code": "EGR101",
		"field": "spec.hosts[1]",
		"message": `spec.hosts[1]: external host "evil.example" is not allowed for namespace "default"`,
	}}
}

test_egr101_allowed_host if {
	_deny("default", {"hosts": ["test.com"], "location": "MESH_EXTERNAL", "ports": _ports([80, 443])}) == set()
}

test_egr101_location_defaults_to_external if {
	_codes("default", {"hosts": ["evil.example"]}) == {"EGR101"}
}

test_egr101_mesh_internal_not_checked if {
	_deny("default", {"hosts": ["evil.example"], "location": "MESH_INTERNAL", "ports": _ports([5432])}) == set()
}

test_egr101_namespace_restriction if {
	_deny("other", {"hosts": ["test.com"]}) == {{
		"code": "EGR101",
		"field": "spec.hosts[0]",
		"message": `spec.hosts[0]: external host "test.com" is not allowed for namespace "other"`,
	}}
}

test_egr101_wildcard_entry if {
	_deny("any", {"hosts": ["en.wikipedia.org", "*.wikipedia.org"], "ports": _ports([443])}) == set()
	_deny("any", {"hosts": ["wikipedia.org"], "ports": _ports([443])}) == {{
		"code": "EGR101",
		"field": "spec.hosts[0]",
		"message": `spec.hosts[0]: external host "wikipedia.org" is not allowed for namespace "any"`,
	}}
	_codes("any", {"hosts": ["*.org"]}) == {"EGR101"}
}

test_egr102_unallowed_port if {
	_deny("default", {"hosts": ["test.com"], "ports": _ports([443, 8443])}) == {{
		"code": "EGR102",
		"field": "spec.ports[1].number",
		"message": `spec.ports[1].number: port 8443 is not allowed for host "test.com" in namespace "default"`,
	}}
}

test_egr102_allowed_ports if {
	_deny("default", {"hosts": ["test.com"], "ports": _ports([80, 443])}) == set()

	# no ports listed in the object
	_deny("default", {"hosts": ["test.com"]}) == set()
}

test_egr102_entry_without_ports_allows_any if {
	_deny("default", {"hosts": ["istio.io"], "ports": _ports([8443, 9000])}) == set()
}

test_egr102_wildcard_entry_ports if {
	_deny("any", {"hosts": ["en.wikipedia.org"], "ports": _ports([80])}) == {{
		"code": "EGR102",
		"field": "spec.ports[0].number",
		"message": `spec.ports[0].number: port 80 is not allowed for host "en.wikipedia.org" in namespace "any"`,
	}}
}

test_egr102_not_for_unallowed_host if {
	# the host itself is refused (EGR101); its ports are not judged
	_codes("other", {"hosts": ["test.com"], "ports": _ports([8443])}) == {"EGR101"}
}

test_egr102_mesh_internal_not_checked if {
	_deny("default", {"hosts": ["test.com"], "location": "MESH_INTERNAL", "ports": _ports([8443])}) == set()
}

test_other_kinds_ignored if {
	out := serviceentry.deny with input as {
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
		"namespace": "default",
		"object": {"spec": {"hosts": ["evil.example"]}},
	}
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
	out == set()
}

_static(hosts, addresses) := {
	"hosts": hosts,
	"location": "MESH_EXTERNAL",
	"resolution": "STATIC",
	"endpoints": [{"address": a} | some a in addresses],
}

test_egr103_listed_addresses if {
	_deny("default", _static(["test.com"], ["192.0.2.10", "203.0.113.77", "2001:db8::5"])) == set()
}

test_egr103_unlisted_address if {
	_deny("default", _static(["test.com"], ["192.0.2.10", "198.51.100.7"])) == {{
		"code": "EGR103",
		"field": "spec.endpoints[1].address",
		"message": `spec.endpoints[1].address: endpoint "198.51.100.7" of external host "test.com" is not allowed for namespace "default"`,
	}}
	_codes("default", _static(["test.com"], ["2001:db9::1"])) == {"EGR103"}
}

test_egr103_entry_without_addresses if {
	_codes("any", _static(["en.wikipedia.org"], ["192.0.2.10"])) == {"EGR103"}
}

test_egr103_addresses_of_the_namespace_entry_only if {
	_deny("team-a", _static(["db.example"], ["198.51.100.5"])) == set()
	_codes("team-b", _static(["db.example"], ["198.51.100.5"])) == {"EGR103"}
}

test_egr103_every_host_must_allow_the_address if {
	_deny("default", _static(["test.com", "istio.io"], ["192.0.2.10"])) == {{
		"code": "EGR103",
		"field": "spec.endpoints[0].address",
		"message": `spec.endpoints[0].address: endpoint "192.0.2.10" of external host "istio.io" is not allowed for namespace "default"`,
	}}
}

test_egr103_dns_endpoint if {
	_deny("default", object.union(_static(["test.com"], ["istio.io"]), {"resolution": "DNS"})) == set()
	_deny("default", object.union(_static(["test.com"], ["test.com"]), {"resolution": "DNS"})) == set()
	_deny("default", object.union(_static(["test.com"], ["proxy.evil.example"]), {"resolution": "DNS"})) == {{
		"code": "EGR103",
		"field": "spec.endpoints[0].address",
		"message": `spec.endpoints[0].address: endpoint "proxy.evil.example" of external host "test.com" is not allowed for namespace "default"`,
	}}
}

test_egr103_unix_socket if {
	_codes("default", _static(["test.com"], ["unix:///var/run/proxy.sock"])) == {"EGR103"}
}

test_egr103_endpoint_without_address if {
	_deny("default", object.union(_static(["test.com"], []), {"endpoints": [{"network": "remote", "locality": "us-east"}]})) == set()
}

test_egr103_only_for_allowed_external_hosts if {
	_codes("default", _static(["evil.example"], ["198.51.100.7"])) == {"EGR101"}
	_deny("default", object.union(_static(["evil.example"], ["198.51.100.7"]), {"location": "MESH_INTERNAL"})) == set()
}

test_egr103_workload_selector if {
	spec := {"hosts": ["test.com"], "location": "MESH_EXTERNAL", "resolution": "STATIC", "workloadSelector": {"labels": {"app": "relay"}}}
	_deny("default", spec) == {{
		"code": "EGR103",
		"field": "spec.workloadSelector",
		"message": `spec.workloadSelector: external host "test.com" would take its endpoints from the workloads the selector picks, which the allow list cannot check; list them in spec.endpoints`,
	}}
	_deny("default", object.union(spec, {"location": "MESH_INTERNAL"})) == set()
	_codes("default", object.union(spec, {"hosts": ["evil.example"]})) == {"EGR101"}
}
