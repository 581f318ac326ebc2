//go:build tools

// Package tools pins the opa CLI used to format-check and test the policies.
package tools

import _ "github.com/open-policy-agent/opa"
