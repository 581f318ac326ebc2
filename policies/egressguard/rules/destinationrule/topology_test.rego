package egressguard.rules.destinationrule_test

import data.egressguard.rules.destinationrule

_secret(name, keys) := {"metadata": {"name": name, "namespace": "istio-system"}, "keys": keys}

_with_secrets(secrets) := {"serviceEntries": [], "objects": {"Secret": {concat("/", ["istio-system", s.metadata.name]): s | some s in secrets}}}

_deny_with(secrets, spec) := out if {
	out := destinationrule.deny with input as _input("default", spec)
		with data.config as _config
		with data.inventory as _with_secrets(secrets)
}

_origination(mode, credential) := {"host": "test.com", "trafficPolicy": {"portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": mode, "credentialName": credential, "sni": "test.com"}}]}}

_egr607(secrets, spec) := {v.message | some v in _deny_with(secrets, spec); v.code == "EGR607"}

test_egr607_credential_secret if {
	mutual := _origination("MUTUAL", "test.client")
	_egr607([_secret("test.client", ["ca.crt", "tls.crt", "tls.key"])], mutual) == set()
	_egr607([_secret("test.client", ["cert", "key"])], mutual) == set()
	_egr607([], mutual) == {`spec.trafficPolicy.portLevelSettings[0].tls.credentialName: Secret "istio-system/test.client", which the egress gateway reads, does not exist`}
	_egr607([_secret("test.client", ["tls.crt"])], mutual) == {`spec.trafficPolicy.portLevelSettings[0].tls.credentialName: Secret "istio-system/test.client" holds no private key (key or tls.key) for MUTUAL`}
	some v in _deny_with([], mutual)
	v.code == "EGR607"
	v.action == "warn"
	v.field == "spec.trafficPolicy.portLevelSettings[0].tls.credentialName"

	# SIMPLE verifies the server: a CA, in the Secret or in Istio's
	# "<name>-cacert" one.
	simple := _origination("SIMPLE", "api-ca")
	_egr607([_secret("api-ca", ["tls.crt"])], simple) == {`spec.trafficPolicy.portLevelSettings[0].tls.credentialName: Secret "istio-system/api-ca" holds no CA certificate (ca.crt or cacert) for SIMPLE`}
	_egr607([_secret("api-ca", ["tls.crt"]), _secret("api-ca-cacert", ["cacert"])], simple) == set()
}

test_egr607_needs_the_model if {
	v := destinationrule.deny with input as _input("default", _origination("MUTUAL", "test.client"))
		with data.config as _config
		with data.inventory as {"serviceEntries": []}
	not "EGR607" in {x.code | some x in v}
}

# A private CA: the MUTUAL credential carries the CA too.
_private := object.union(_config, {"allow": [{
	"hosts": ["test.com"], "ports": [443],
	"origination": {"mode": "MUTUAL", "port": 443, "credentialName": "test.client", "privateCA": true},
}]})

_private_messages(secrets) := {v.message |
	some v in destinationrule.deny with input as _input("default", _origination("MUTUAL", "test.client"))
		with data.config as _private
		with data.inventory as _with_secrets(secrets)
	v.code == "EGR607"
}

test_egr607_private_ca if {
	_private_messages([_secret("test.client", ["tls.crt", "tls.key"])]) == {`spec.trafficPolicy.portLevelSettings[0].tls.credentialName: Secret "istio-system/test.client" holds no CA certificate (ca.crt or cacert) for MUTUAL`}
	_private_messages([_secret("test.client", ["tls.crt", "tls.key", "ca.crt"])]) == set()
}
