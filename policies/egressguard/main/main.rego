# The decision egress-guard asks for. Every package under egressguard.rules
# (the embedded pack and the platform's own files) contributes `deny` sets of
# violations {code, message, field[, action]} and `intents` sets of mutation
# intents {type, ...}. Objects in exempt namespaces and kinds the configuration
# does not police (data.config.kinds) produce neither.
package egressguard.main

import data.egressguard.lib

applies if {
	_policed
	not input.namespace in data.config.exemptNamespaces
}

_policed if {
	some k in data.config.kinds
	k.group == input.kind.group
	k.kind == input.kind.kind
}

_policed if {
	lib.workload_kinds[input.kind.kind] == input.kind.group
	object.get(data.config, ["workloads", "enabled"], true)
}

# violations: a rule may set its own action; egress-guard resolves the action
# each takes from the config's overrides, that action and the enforcement.
violations contains object.union({"field": ""}, v) if {
	applies
	some v in data.egressguard.rules[_].deny
}

intents contains intent if {
	applies
	some intent in data.egressguard.rules[_].intents
}
