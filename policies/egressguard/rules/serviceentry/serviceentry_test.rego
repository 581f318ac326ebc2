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
		{"hosts": ["*.wikipedia.org"], "ports": [443], "sniForwarding": true},
		{"hosts": ["istio.io"]},
		{"hosts": ["*.example.net"], "ports": [443]},
		{"hosts": ["api.partner.example"], "namespaces": ["team-a", "team-b"]},
		{"hosts": ["api.partner.example"], "namespaces": ["team-c"]},
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

test_egr101_mesh_internal_is_egr104 if {
	# an external host called internal is refused as such (EGR104)
	_codes("default", {"hosts": ["evil.example"], "location": "MESH_INTERNAL", "ports": _ports([5432])}) == {"EGR104"}
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

test_egr102_mesh_internal_is_egr104 if {
	_codes("default", {"hosts": ["test.com"], "location": "MESH_INTERNAL", "ports": _ports([8443])}) == {"EGR104"}
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
	_codes("default", object.union(_static(["evil.example"], ["198.51.100.7"]), {"location": "MESH_INTERNAL"})) == {"EGR104"}
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

_intents(ns, spec) := out if {
	out := serviceentry.intents with input as {
		"operation": "CREATE",
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
		"namespace": ns,
		"name": "x",
		"object": {"metadata": {"name": "x", "namespace": ns}, "spec": spec},
	}
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
}

test_egr104_mesh_internal_external_host if {
	_deny("default", {"hosts": ["test.com"], "location": "MESH_INTERNAL", "resolution": "DNS", "ports": _ports([443])}) == {{
		"code": "EGR104",
		"field": "spec.location",
		"message": `spec.location: MESH_INTERNAL for host "test.com", which is not a name of the cluster: its traffic would leave from the sidecar as if it stayed in the mesh; register it as MESH_EXTERNAL`,
	}}
}

test_egr104_cluster_names_and_mesh_workloads if {
	# names of the cluster
	_deny("default", {"hosts": ["db.team-a.svc.cluster.local", "db", "vm.local"], "location": "MESH_INTERNAL", "resolution": "DNS", "ports": _ports([443])}) == set()

	# endpoints picked from the mesh's own workloads
	_deny("default", {"hosts": ["vm.example.internal"], "location": "MESH_INTERNAL", "resolution": "STATIC", "ports": _ports([443]), "workloadSelector": {"labels": {"app": "vm"}}}) == set()
}

test_egr105_wildcard_resolution_none if {
	_deny("any", {"hosts": ["*.example.net"], "ports": _ports([443])}) == {{
		"code": "EGR105",
		"field": "spec.hosts[0]",
		"message": `spec.hosts[0]: wildcard host "*.example.net" with resolution NONE is forwarded to whatever address the client dialled; the platform allows that only for hosts it forwards by SNI at the egress gateway (allow entry with sniForwarding)`,
	}}
	_codes("any", {"hosts": ["*.example.net"], "resolution": "NONE", "ports": _ports([443])}) == {"EGR105"}
}

test_egr105_sni_forwarding_allows_it if {
	_deny("any", {"hosts": ["*.wikipedia.org"], "ports": _ports([443])}) == set()
}

test_egr105_not_for_unallowed_or_exact_hosts if {
	_codes("any", {"hosts": ["*.evil.example"], "ports": _ports([443])}) == {"EGR101"}
	_deny("default", {"hosts": ["test.com"], "ports": _ports([443])}) == set()
}

test_egr106_tcp_port_any_address if {
	spec := {"hosts": ["istio.io"], "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}]}
	_deny("any", spec) == {{
		"code": "EGR106",
		"field": "spec.ports[0]",
		"message": `spec.ports[0]: port 5432 (TCP) with resolution NONE and no spec.addresses matches traffic to any IP address on the port; give the host's addresses in spec.addresses, or use resolution DNS`,
	}}

	# an unset protocol is sniffed and falls back to TCP
	_deny("any", {"hosts": ["istio.io"], "ports": [{"number": 9000, "name": "x"}]}) == {{
		"code": "EGR106",
		"field": "spec.ports[0]",
		"message": `spec.ports[0]: port 9000 (no protocol) with resolution NONE and no spec.addresses matches traffic to any IP address on the port; give the host's addresses in spec.addresses, or use resolution DNS`,
	}}
	_codes("any", {"hosts": ["istio.io"], "ports": [{"number": 3306, "name": "m", "protocol": "MYSQL"}]}) == {"EGR106"}
}

test_egr106_matched_by_name_or_resolved if {
	# TLS is matched by SNI, HTTP by Host
	_deny("any", {"hosts": ["istio.io"], "ports": [{"number": 443, "name": "t", "protocol": "TLS"}, {"number": 80, "name": "h", "protocol": "HTTP"}]}) == set()

	# resolved, or given addresses
	_deny("any", {"hosts": ["istio.io"], "resolution": "DNS", "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}]}) == set()
	_deny("default", {"hosts": ["test.com"], "addresses": ["192.0.2.10"], "ports": [{"number": 80, "name": "pg", "protocol": "TCP"}]}) == set()

	# a service of the cluster
	_deny("any", {"hosts": ["db.team-a.svc.cluster.local"], "location": "MESH_INTERNAL", "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}]}) == set()
}

test_egr107_matches_everything if {
	_deny("default", {"hosts": ["test.com"], "resolution": "NONE", "addresses": ["0.0.0.0/0"], "ports": _ports([443])}) == {{
		"code": "EGR107",
		"field": "spec.addresses[0]",
		"message": `spec.addresses[0]: "0.0.0.0/0" matches every destination address: the entry would take all traffic on its ports`,
	}}
	_codes("default", {"hosts": ["test.com"], "resolution": "NONE", "addresses": ["192.0.2.10", "::/0"], "ports": _ports([443])}) == {"EGR107"}
}

test_egr107_wider_than_allowed if {
	_deny("default", {"hosts": ["test.com"], "resolution": "NONE", "addresses": ["203.0.113.0/25", "203.0.0.0/16"], "ports": _ports([443])}) == {{
		"code": "EGR107",
		"field": "spec.addresses[1]",
		"message": `spec.addresses[1]: "203.0.0.0/16" is not inside the addresses the allow list gives external host "test.com" in namespace "default"`,
	}}

	# an entry without addresses gives none
	_codes("any", {"hosts": ["istio.io"], "resolution": "NONE", "addresses": ["192.0.2.1"], "ports": _ports([443])}) == {"EGR107"}
}

test_egr107_inside_allowed if {
	_deny("default", {"hosts": ["test.com"], "resolution": "NONE", "addresses": ["192.0.2.10", "203.0.113.0/24", "2001:db8::7"], "ports": _ports([443])}) == set()
}

test_egr108_dynamic_dns if {
	_deny("any", {"hosts": ["*.wikipedia.org"], "resolution": "DYNAMIC_DNS", "ports": _ports([443])}) == {{
		"code": "EGR108",
		"field": "spec.resolution",
		"message": `spec.resolution: DYNAMIC_DNS makes the proxy resolve and reach any name "*.wikipedia.org" matches by itself; use resolution DNS for each host, or NONE where the platform forwards by SNI at the gateway`,
	}}

	# MESH_INTERNAL with an external name too
	_codes("any", {"hosts": ["*.wikipedia.org"], "location": "MESH_INTERNAL", "resolution": "DYNAMIC_DNS", "ports": _ports([443])}) == {"EGR104", "EGR108"}

	# names of the cluster resolve inside it
	_deny("any", {"hosts": ["*.team-a.svc.cluster.local"], "location": "MESH_INTERNAL", "resolution": "DYNAMIC_DNS", "ports": _ports([443])}) == set()
}

_partner(exports) := {"hosts": ["api.partner.example"], "resolution": "DNS", "ports": _ports([443]), "exportTo": exports}

test_egr109_export_everywhere if {
	_deny("team-a", _partner(["*"])) == {{
		"code": "EGR109",
		"field": "spec.exportTo[0]",
		"message": `spec.exportTo[0]: "*" exports host "api.partner.example" beyond the namespaces the allow list gives it (team-a, team-b, team-c)`,
	}}
	_intents("team-a", _partner(["*"])) == {{"type": "restrict_export", "code": "EGR109", "exportTo": [".", "team-b", "team-c"]}}
}

test_egr109_export_to_an_unallowed_namespace if {
	_codes("team-a", _partner([".", "team-d"])) == {"EGR109"}
	_intents("team-a", _partner([".", "team-d"])) == {{"type": "restrict_export", "code": "EGR109", "exportTo": ["."]}}

	# nothing the entry may keep: refused, not rewritten
	_codes("team-a", _partner(["team-d"])) == {"EGR109"}
	_intents("team-a", _partner(["team-d"])) == set()
}

test_egr109_allowed_exports if {
	_deny("team-a", _partner([".", "team-c", "team-a"])) == set()
	_deny("team-a", _partner(["~"])) == set()
	_intents("team-a", _partner(["."])) == set()

	# a host allowed everywhere may be exported everywhere
	_deny("any", {"hosts": ["istio.io"], "resolution": "DNS", "ports": _ports([443]), "exportTo": ["*"]}) == set()
}

test_egr109_every_restricted_host if {
	# exported where both hosts are allowed only
	spec := {"hosts": ["api.partner.example", "db.example"], "resolution": "DNS", "ports": _ports([443]), "exportTo": ["*"]}
	_intents("team-a", spec) == {{"type": "restrict_export", "code": "EGR109", "exportTo": [".", "team-b"]}}
}

_audit(spec, routes) := out if {
	out := serviceentry.deny with input as {
		"operation": "CREATE",
		"kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
		"namespace": "default",
		"name": "x",
		"object": {"metadata": {"name": "x", "namespace": "default"}, "spec": spec},
	}
		with data.config as object.union(_config, {"gatewayNames": {"istio-egressgateway.istio-system.svc.cluster.local": true}})
		with data.inventory as {"serviceEntries": [], "virtualServicesByHost": routes}
}

_via_gateway := {"metadata": {"namespace": "default"}, "spec": {
	"hosts": ["test.com"],
	"gateways": ["mesh", "istio-system/egress-gateway"],
	"http": [
		{"match": [{"gateways": ["mesh"]}], "route": [{"destination": {"host": "istio-egressgateway.istio-system.svc.cluster.local"}}]},
		{"match": [{"gateways": ["istio-system/egress-gateway"]}], "route": [{"destination": {"host": "test.com", "port": {"number": 443}}}]},
	],
}}

_direct := {"metadata": {"namespace": "default"}, "spec": {"hosts": ["test.com"], "http": [{"route": [{"destination": {"host": "test.com"}}]}]}}

test_egr110_no_route_through_the_gateway if {
	spec := {"hosts": ["test.com"], "resolution": "DNS", "ports": _ports([443])}
	_audit(spec, {}) == {{
		"code": "EGR110",
		"field": "spec.hosts[0]",
		"message": `spec.hosts[0]: no VirtualService routes the mesh's traffic for external host "test.com" through the egress gateway: the sidecars reach it directly`,
	}}
	{v.code | some v in _audit(spec, {"test.com": [_direct]})} == {"EGR110"}
	_audit(spec, {"test.com": [_direct, _via_gateway]}) == set()
}

test_egr110_only_in_the_audit_and_for_allowed_hosts if {
	# admission (serve, check) does not know the routes
	_deny("default", {"hosts": ["test.com"], "resolution": "DNS", "ports": _ports([443])}) == set()

	# an unallowed host is EGR101's; an internal entry is not egress
	{v.code | some v in _audit({"hosts": ["evil.example"], "resolution": "DNS"}, {})} == {"EGR101"}
	_audit({"hosts": ["db.team-a.svc.cluster.local"], "location": "MESH_INTERNAL", "resolution": "DNS"}, {}) == set()
}
