# DaemonSet rules: the workload rules (egressguard.workloads) on its pod template.
package egressguard.rules.daemonset

deny contains v if {
	some v in data.egressguard.workloads.deny
}
