package egressguard.workloads_test

import data.egressguard.workloads

_config := {"platform": {"rootNamespace": "istio-system", "namespaces": ["istio-system"], "users": [], "groups": ["platform-admins"]}}

_review(kind, group, object, groups) := out if {
	out := workloads.deny with input as {
		"operation": "CREATE",
		"kind": {"group": group, "version": "v1", "kind": kind},
		"namespace": "team-a",
		"name": "x",
		"userInfo": {"username": "alice", "groups": groups},
		"object": object,
	}
		with data.config as _config
}

_pod(annotations, labels, spec) := {"metadata": {"name": "x", "annotations": annotations, "labels": labels}, "spec": spec}

_app := {"containers": [{"name": "app", "image": "app:1"}]}

_codes(kind, group, object) := {v.code | some v in _review(kind, group, object, [])}

test_egr501_exclude_ranges if {
	_review("Pod", "", _pod({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0"}, {}, _app), []) == {{
		"code": "EGR501",
		"field": `metadata.annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"]`,
		"message": `metadata.annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"]: "0.0.0.0/0" sends outbound traffic to these ranges around the sidecar, to go out directly; only the platform's namespaces (istio-system), users (none) or groups (platform-admins) may set it`,
	}}
}

test_templates_of_every_workload_kind if {
	template := _pod({"traffic.sidecar.istio.io/excludeOutboundPorts": "443"}, {}, _app)
	every kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"] {
		{v.field | some v in _review(kind, "apps", {"spec": {"template": template}}, [])} == {`spec.template.metadata.annotations["traffic.sidecar.istio.io/excludeOutboundPorts"]`}
	}
	{v.code | some v in _review("Job", "batch", {"spec": {"template": template}}, [])} == {"EGR502"}
	{v.field | some v in _review("CronJob", "batch", {"spec": {"jobTemplate": {"spec": {"template": template}}}}, [])} == {`spec.jobTemplate.spec.template.metadata.annotations["traffic.sidecar.istio.io/excludeOutboundPorts"]`}

	# another group's Deployment is not a workload
	_review("Deployment", "example.com", {"spec": {"template": template}}, []) == set()
}

test_egr503_egr504_egr506_egr507 if {
	_codes("Pod", "", _pod({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8"}, {}, _app)) == {"EGR503"}
	_codes("Pod", "", _pod({"traffic.sidecar.istio.io/includeOutboundIPRanges": "*"}, {}, _app)) == set()
	_codes("Pod", "", _pod({"traffic.sidecar.istio.io/excludeInterfaces": "eth1"}, {}, _app)) == {"EGR504"}
	_codes("Pod", "", _pod({"sidecar.istio.io/interceptionMode": "NONE"}, {}, _app)) == {"EGR506"}
	_codes("Pod", "", _pod({"sidecar.istio.io/interceptionMode": "TPROXY"}, {}, _app)) == set()
	_codes("Pod", "", _pod({}, {"istio.io/dataplane-mode": "none"}, _app)) == {"EGR507"}
	_codes("Pod", "", _pod({}, {"istio.io/dataplane-mode": "ambient"}, _app)) == set()
}

test_egr505_no_sidecar if {
	{v.field | some v in _review("Pod", "", _pod({"sidecar.istio.io/inject": "false"}, {"sidecar.istio.io/inject": "False"}, _app), [])} == {
		`metadata.labels["sidecar.istio.io/inject"]`,
		`metadata.annotations["sidecar.istio.io/inject"]`,
	}
	_codes("Pod", "", _pod({"sidecar.istio.io/inject": "true"}, {}, _app)) == set()
}

test_egr508_proxy_identity if {
	spec := {"securityContext": {"runAsUser": 1337}, "containers": [{"name": "app", "securityContext": {"runAsGroup": 1337}}]}
	{v.field | some v in _review("Pod", "", _pod({}, {}, spec), [])} == {"spec.securityContext.runAsUser", "spec.containers[0].securityContext.runAsGroup"}
}

test_egr509_host_network if {
	{v.field | some v in _review("Pod", "", _pod({}, {}, object.union(_app, {"hostNetwork": true})), [])} == {"spec.hostNetwork"}
}

test_egr510_capabilities if {
	spec := {
		"containers": [{"name": "app", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "NET_ADMIN"]}}}],
		"initContainers": [{"name": "setup", "securityContext": {"capabilities": {"add": ["cap_net_raw"]}}}],
	}
	{v.field | some v in _review("Pod", "", _pod({}, {}, spec), [])} == {
		"spec.containers[0].securityContext.capabilities.add[1]",
		"spec.initContainers[0].securityContext.capabilities.add[0]",
	}
}

# What Istio's injector added (its status annotation names the containers)
# runs as the proxy with NET_ADMIN by design; a container the user named
# istio-proxy in a template is the user's.
test_injected_containers if {
	status := `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"]}`
	spec := {
		"initContainers": [{"name": "istio-init", "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}}],
		"containers": [
			{"name": "app"},
			{"name": "istio-proxy", "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}},
		],
	}
	_review("Pod", "", _pod({"sidecar.istio.io/status": status}, {}, spec), []) == set()
	_codes("Deployment", "apps", {"spec": {"template": _pod({"sidecar.istio.io/status": status}, {}, spec)}}) == {"EGR508", "EGR510"}
}

test_platform_may if {
	_review("Pod", "", _pod({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0"}, {}, object.union(_app, {"hostNetwork": true})), ["platform-admins"]) == set()
}

test_plain_workloads_pass if {
	_review("Pod", "", _pod({"prometheus.io/scrape": "true"}, {"app": "x"}, _app), []) == set()
	_review("Deployment", "apps", {"spec": {"template": _pod({}, {}, _app)}}, []) == set()
	_review("ServiceEntry", "networking.istio.io", {"spec": {"hosts": ["a.com"]}}, []) == set()
}
