// The Prometheus Operator's CRDs (example/prometheus-operator-crd), for the
// chart's ServiceMonitor. No package of the module is built: it is required
// for its files only, so `go mod tidy` must not be run here.
module egressguard.io/tools/prometheus-operator

go 1.26

require github.com/prometheus-operator/prometheus-operator v0.85.0
