# egress-guard. Everything the build and the tests need is built from Go
# modules into .cache/ (git-ignored); nothing is downloaded at run time.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DEFAULT_GOAL := build

CACHE      := $(CURDIR)/.cache
TOOLS_BIN  := $(CACHE)/bin
BIN        := $(CURDIR)/bin
GO         ?= go
# The checksum database does not answer for some k8s.io release modules; the
# tools' go.sum files pin them instead.
export GONOSUMDB := k8s.io
export KUBEBUILDER_ASSETS := $(TOOLS_BIN)

KUBE_APISERVER := $(TOOLS_BIN)/kube-apiserver
ETCD           := $(TOOLS_BIN)/etcd
OPA            := $(TOOLS_BIN)/opa
HELM           := $(TOOLS_BIN)/helm
CAINJECTOR     := $(TOOLS_BIN)/cainjector
CM_CONTROLLER  := $(TOOLS_BIN)/cert-manager-controller
EGRESS_GUARD   := $(BIN)/egress-guard

.PHONY: build tools chromium test unit policy-test e2e chart-test bench demo lint clean

build: $(EGRESS_GUARD)

$(EGRESS_GUARD): $(shell find cmd webhook policies mutators certs -type f 2>/dev/null) go.mod go.sum
	$(GO) build -o $@ ./cmd/egress-guard

# A real control plane for the end-to-end tests, built from Go modules.
# Stamped with its version, as a release build is: clients such as
# `helm install` check a chart's kubeVersion against it.
$(KUBE_APISERVER): test/tools/kube-apiserver/go.mod test/tools/kube-apiserver/go.sum
	cd test/tools/kube-apiserver && \
	  version=$$($(GO) list -m -f '{{.Version}}' k8s.io/kubernetes) && \
	  minor=$$(echo $$version | cut -d. -f2) && \
	  $(GO) build -o $@ -ldflags "-X k8s.io/component-base/version.gitVersion=$$version \
	    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$$minor" \
	    k8s.io/kubernetes/cmd/kube-apiserver

$(ETCD): test/tools/etcd/go.mod test/tools/etcd/go.sum
	cd test/tools/etcd && $(GO) build -o $@ go.etcd.io/etcd/server/v3

$(OPA): test/tools/opa/go.mod test/tools/opa/go.sum
	cd test/tools/opa && $(GO) build -o $@ github.com/open-policy-agent/opa

# Headless Chromium renders the HTML audit report in the tests: Debian's
# package, installed once (as root, like the CI machines) with its .debs kept
# under .cache/apt.
chromium:
	@command -v chromium >/dev/null || { mkdir -p $(CACHE)/apt/partial && \
		apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends -o Dir::Cache::archives=$(CACHE)/apt chromium; }

# helm as its release build stamps it: its version, and the Kubernetes version
# `helm template` and `helm lint` assume (that of the client-go it is built
# with; the default would be 1.20).
$(HELM): test/tools/helm/go.mod test/tools/helm/go.sum
	cd test/tools/helm && \
	  version=$$($(GO) list -m -f '{{.Version}}' helm.sh/helm/v3) && \
	  minor=$$($(GO) list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2) && \
	  $(GO) build -o $@ -ldflags "-X helm.sh/helm/v3/internal/version.version=$$version \
	    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$$minor \
	    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$$minor" \
	    helm.sh/helm/v3/cmd/helm

# cert-manager's CA injector and issuing controllers (test/tools/cert-manager);
# the tests take cert-manager's CRDs from the same module.
$(CAINJECTOR): $(wildcard test/tools/cert-manager/go.* test/tools/cert-manager/cainjector/*.go)
	cd test/tools/cert-manager && $(GO) build -o $@ ./cainjector

$(CM_CONTROLLER): $(wildcard test/tools/cert-manager/go.* test/tools/cert-manager/controller/*.go)
	cd test/tools/cert-manager && $(GO) build -o $@ ./controller

# The Prometheus Operator's module, for its ServiceMonitor CRD (nothing is
# built from it).
PROM_OPERATOR := $(CACHE)/prometheus-operator.downloaded
$(PROM_OPERATOR): test/tools/prometheus-operator/go.mod test/tools/prometheus-operator/go.sum
	cd test/tools/prometheus-operator && $(GO) mod download github.com/prometheus-operator/prometheus-operator
	touch $@

tools: $(KUBE_APISERVER) $(ETCD) $(OPA) $(HELM) $(CAINJECTOR) $(CM_CONTROLLER) $(PROM_OPERATOR) chromium

# Everything: unit and handler tests, Rego tests (Go runner and opa test),
# the five scenarios through `check`, the end-to-end tests against a real
# kube-apiserver + etcd with Istio's CRDs, and the Helm chart's tests against
# the same control plane. The two e2e packages run one after the other
# (-p 1): each starts its own control plane.
test: tools build
	$(OPA) fmt --fail -l policies/
	$(OPA) test -v policies/ | tail -n 3
	@unformatted=$$(gofmt -l cmd webhook mutators certs policies test); \
		if [ -n "$$unformatted" ]; then echo "not gofmt-formatted: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/...
	$(GO) test -count=1 ./...
	$(HELM) lint --strict charts/egress-guard
	EGRESS_GUARD_BIN=$(EGRESS_GUARD) $(GO) test -count=1 -p 1 -timeout 25m -tags e2e ./test/e2e/... ./test/chart/...

unit:
	$(GO) test ./...

policy-test: $(OPA)
	$(OPA) test -v policies/

e2e: tools build
	EGRESS_GUARD_BIN=$(EGRESS_GUARD) $(GO) test -count=1 -v -timeout 20m -tags e2e ./test/e2e/...

# The Helm chart alone: lint, rendering of every documented option with
# server-side dry runs, schema rejections, an install in cert-manager mode
# with cert-manager's issuing controllers and CA injector, and one in
# self-managed mode with Events and the audit (test/chart).
chart-test: tools build
	$(HELM) lint --strict charts/egress-guard
	EGRESS_GUARD_BIN=$(EGRESS_GUARD) $(GO) test -count=1 -v -timeout 10m -tags e2e ./test/chart/...

# The servers run on CPU 1 and the load generator on CPU 0 when the machine
# has two or more (taskset); BENCH_ARGS adds flags to both runs (go run
# ./test/bench -h). The second run (-churn) measures serve --inventory under
# ServiceEntry churn against a real kube-apiserver and etcd (on the load
# generator's CPU); BENCH_CHURN_ARGS adds flags to it alone.
bench: build $(KUBE_APISERVER) $(ETCD)
	$(GO) build -o $(BIN)/bench ./test/bench
	@if [ "$$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then \
		pin="taskset -c 0"; cpus="-server-cpus 1"; \
	else \
		pin=""; cpus=""; \
	fi; \
	echo $$pin $(BIN)/bench -egress-guard $(EGRESS_GUARD) $$cpus $(BENCH_ARGS); \
	$$pin $(BIN)/bench -egress-guard $(EGRESS_GUARD) $$cpus $(BENCH_ARGS); \
	echo $$pin $(BIN)/bench -churn -egress-guard $(EGRESS_GUARD) $$cpus $(BENCH_ARGS) $(BENCH_CHURN_ARGS); \
	$$pin $(BIN)/bench -churn -egress-guard $(EGRESS_GUARD) $$cpus $(BENCH_ARGS) $(BENCH_CHURN_ARGS)

demo: $(KUBE_APISERVER) $(ETCD) build
	$(GO) run ./test/demo -egress-guard $(EGRESS_GUARD)

clean:
	rm -rf $(BIN) $(CACHE)
