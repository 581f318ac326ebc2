//go:build tools

// Package tools pins the etcd used by the end-to-end tests.
package tools

import _ "go.etcd.io/etcd/server/v3"
