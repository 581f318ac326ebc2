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

# violations: each with the action it takes; a rule may set its own action,
# otherwise the configured enforcement applies.
violations contains object.union({"action": data.config.enforcement, "field": ""}, v) if {
	applies
	some v in data.egressguard.rules[_].deny
}

intents contains intent if {
	applies
	some intent in data.egressguard.rules[_].intents
}
