// Package policies embeds egress-guard's default Rego rule pack.
//
// Every rule lives in a package under egressguard.rules and contributes to
// `deny` (violations) and, where it can fix what it finds, `intents`.
// egressguard.main gathers them; see docs/policy-contract.md for the contract.
package policies

import "embed"

// FS holds the default rule pack, test files included; loaders skip
// files ending in _test.rego outside of tests.
//
//go:embed egressguard
var FS embed.FS
