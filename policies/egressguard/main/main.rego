# The decision egress-guard asks for. Every package under egressguard.rules
# (the embedded pack and the platform's own files) contributes `deny` sets of
# violations {code, message, field[, action]} and `intents` sets of mutation
# intents {type, ...}. Objects in exempt namespaces and kinds the guard does not
# know produce neither.
package egressguard.main

kinds := {"ServiceEntry", "VirtualService", "DestinationRule"}

applies if {
	input.kind.kind in kinds
	not input.namespace in data.config.exemptNamespaces
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
