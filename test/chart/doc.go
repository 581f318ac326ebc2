// Package chart holds the tests of the Helm chart charts/egress-guard (build
// tag e2e), against the same real control plane as the end-to-end tests:
// kube-apiserver and etcd started by envtest from $KUBEBUILDER_ASSETS, with
// Istio's CRDs (istio.io/api module), cert-manager's CRDs (deploy/crds of the
// github.com/cert-manager/cert-manager module pinned in
// test/tools/cert-manager) and the Prometheus Operator's ServiceMonitor CRD
// (test/tools/prometheus-operator).
//
// What they show:
//
//	TestLint            helm lint --strict of the default values and of every
//	                    documented option
//	TestRender          helm template of the same cases; assertions on what
//	                    matters for safety (webhook rules, matchPolicy,
//	                    namespaceSelector evaluated against namespaces,
//	                    the workload webhooks' selectors against mesh
//	                    labels (each mesh namespace sent to exactly one),
//	                    failurePolicy, the exact RBAC of each combination
//	                    of certificate mode, Events and audit, the
//	                    EgressGuardConfig parsed by egress-guard's own
//	                    parser, the report CRDs as published), then every
//	                    rendered object sent to the API server with kubectl
//	                    apply --dry-run=server
//	TestSchemaRejects   bad values fail helm template with a message naming
//	                    the value
//	TestCertManagerInstall
//	                    helm install in cert-manager mode; cert-manager's own
//	                    issuing controllers and CA injector (processes built
//	                    from test/tools/cert-manager) issue the chart's
//	                    certificates and write the CA into both webhook
//	                    configurations; egress-guard runs with
//	                    the Deployment's own arguments and mounted files, and
//	                    the API server calls it through the chart's Service
//	                    over verified TLS, Pods judged in a mesh namespace
//	                    only; then the failure policies with the webhook
//	                    stopped, helm upgrade and helm uninstall
//	TestSelfManagedInstall
//	                    helm install in self-managed mode with Events and
//	                    a 5s audit: egress-guard creates its Secret, writes
//	                    the caBundle of both webhook configurations and
//	                    serves the scenario through the Service; its Events
//	                    and Reports appear; helm uninstall keeps the report
//	                    CRD
//
// Where the pods mount a ServiceAccount token, egress-guard reaches the API
// server as the chart's ServiceAccount, with a token from the TokenRequest
// API: the chart's RBAC is all it has, and a call it refuses fails the test.
//
// kube-apiserver reaches the Service the way it does in a cluster: it
// resolves the Service to its ClusterIP and dials it, verifying the serving
// certificate for <service>.<namespace>.svc. Without nodes there is no
// kube-proxy, so the API server's "cluster" egress goes through an HTTP
// CONNECT proxy (harness.ServiceProxy) that forwards the ClusterIP to the
// egress-guard process on 127.0.0.1. Nothing leaves the loopback interface.
//
// Run with:
//
//	make chart-test
//
// or
//
//	KUBEBUILDER_ASSETS=$PWD/.cache/bin EGRESS_GUARD_BIN=$PWD/bin/egress-guard \
//	  go test -tags e2e -count=1 -v ./test/chart/...
//
// HELM, CAINJECTOR and CERT_MANAGER_CONTROLLER name the binaries (default:
// helm, cainjector and cert-manager-controller in $KUBEBUILDER_ASSETS, where
// `make tools` builds them).
package chart
