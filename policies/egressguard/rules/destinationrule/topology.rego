# Topology rules of DestinationRules, with the cluster model: the Secret a TLS
# origination names (credentialName) is read by the egress gateway, in its
# namespace, and must hold what the mode needs (EGR607). Existence depends on
# the order objects are applied in: under deny enforcement it warns at
# admission (overrides may say otherwise), and the audit reports it.
package egressguard.rules.destinationrule

import data.egressguard.lib

_secrets := data.inventory.objects.Secret

# Key names Istio reads a credential from: a TLS Secret's, or a generic
# one's.
_cert_keys := {"tls.crt", "cert"}

_key_keys := {"tls.key", "key"}

_ca_keys := {"ca.crt", "cacert"}

# _needs(mode): what a credential must hold for mode, as [what, key names].
_needs("MUTUAL") := [["certificate", _cert_keys], ["private key", _key_keys]]

_needs("SIMPLE") := [["CA certificate", _ca_keys]]

# EGR607: a credentialName whose Secret is missing from the gateway's
# namespace, or lacks a key the mode needs.
deny contains _existence_violation({
	"code": "EGR607",
	"field": sprintf("%s.tls.credentialName", [path]),
	"message": sprintf("%s.tls.credentialName: %s", [path, problem]),
}) if {
	_secrets
	some [path, tls] in _tls
	name := tls.credentialName
	some problem in _credential_problems(name, upper(object.get(tls, "mode", "")))
}

_secret_key(name) := concat("/", [data.config.gateway.namespace, name])

# _needs_for(name, mode): _needs, and a CA for MUTUAL where the host's
# origination with this credential says its CA is private.
_needs_for(name, "MUTUAL") := array.concat(_needs("MUTUAL"), [["CA certificate", _ca_keys]]) if {
	o := lib.request_origination[_host]
	o.privateCA == true
	o.credentialName == name
} else := _needs("MUTUAL")

_needs_for(_, "SIMPLE") := _needs("SIMPLE")

_credential_problems(name, mode) := {sprintf("Secret %q, which the egress gateway reads, does not exist", [_secret_key(name)])} if {
	not _secrets[_secret_key(name)]
	_needs(mode)
}

_credential_problems(name, mode) := {sprintf("Secret %q holds no %s (%s) for %s", [_secret_key(name), what, concat(" or ", sort(names)), mode]) |
	some [what, names] in _needs_for(name, mode)
	not _holds(name, names)
} if _secrets[_secret_key(name)]

# _holds(name, names): the credential holds one of names, in its Secret or,
# for a CA, in Istio's separate "<name>-cacert" Secret.
_holds(name, names) if {
	some k in _secrets[_secret_key(name)].keys
	k in names
}

_holds(name, names) if {
	names == _ca_keys
	some k in _secrets[_secret_key(concat("", [name, "-cacert"]))].keys
	k in names
}

_existence_violation(v) := object.union(v, {"action": "warn"}) if data.config.enforcement == "deny"

else := v
