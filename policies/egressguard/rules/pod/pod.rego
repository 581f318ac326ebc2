# Pod rules: the workload rules (egressguard.workloads) on its pod template.
package egressguard.rules.pod

deny contains v if {
	some v in data.egressguard.workloads.deny
}
