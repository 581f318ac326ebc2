# Workload helpers: where a Pod's specification is in each workload kind.
package egressguard.lib

# workload_kinds[kind] is the API group of a workload kind (Go:
# config.WorkloadKinds).
workload_kinds := {
	"Pod": "",
	"Deployment": "apps",
	"StatefulSet": "apps",
	"DaemonSet": "apps",
	"ReplicaSet": "apps",
	"Job": "batch",
	"CronJob": "batch",
}

# pod_template is [path, template] for the object under review: the object
# itself for a Pod (path ""), its pod template for the other workload kinds
# (path "spec.template." or "spec.jobTemplate.spec.template."). A template has
# metadata and spec.
pod_template := ["", input.object] if {
	input.kind.kind == "Pod"
	input.kind.group == ""
}

pod_template := ["spec.template.", input.object.spec.template] if {
	input.kind.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
	input.kind.group == workload_kinds[input.kind.kind]
}

pod_template := ["spec.jobTemplate.spec.template.", input.object.spec.jobTemplate.spec.template] if {
	input.kind.kind == "CronJob"
	input.kind.group == "batch"
}
