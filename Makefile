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
EGRESS_GUARD   := $(BIN)/egress-guard

.PHONY: build tools chromium test unit policy-test e2e bench demo lint clean

build: $(EGRESS_GUARD)

$(EGRESS_GUARD): $(shell find cmd webhook policies mutators certs -type f 2>/dev/null) go.mod go.sum
	$(GO) build -o $@ ./cmd/egress-guard

# A real control plane for the end-to-end tests, built from Go modules.
$(KUBE_APISERVER): test/tools/kube-apiserver/go.mod test/tools/kube-apiserver/go.sum
	cd test/tools/kube-apiserver && $(GO) build -o $@ k8s.io/kubernetes/cmd/kube-apiserver

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

tools: $(KUBE_APISERVER) $(ETCD) $(OPA) chromium

# Everything: unit and handler tests, Rego tests (Go runner and opa test),
# the five scenarios through `check`, and the end-to-end tests against a real
# kube-apiserver + etcd with Istio's CRDs.
test: tools build
	$(OPA) fmt --fail -l policies/
	$(OPA) test -v policies/ | tail -n 3
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	EGRESS_GUARD_BIN=$(EGRESS_GUARD) $(GO) test -count=1 -timeout 20m -tags e2e ./test/e2e/...

unit:
	$(GO) test ./...

policy-test: $(OPA)
	$(OPA) test -v policies/

e2e: tools build
	EGRESS_GUARD_BIN=$(EGRESS_GUARD) $(GO) test -count=1 -v -timeout 20m -tags e2e ./test/e2e/...

bench: build
	$(GO) run ./test/bench -egress-guard $(EGRESS_GUARD)

demo: tools build
	$(GO) run ./test/demo -egress-guard $(EGRESS_GUARD)

clean:
	rm -rf $(BIN) $(CACHE)
