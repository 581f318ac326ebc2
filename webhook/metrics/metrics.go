// Package metrics defines egress-guard's Prometheus metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the guard's own series, beside controller-runtime's webhook
// series on the same registry.
type Metrics struct {
	requests   *prometheus.CounterVec
	violations *prometheus.CounterVec
	mutations  *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	reloads    *prometheus.CounterVec
	inventory  prometheus.Gauge
	updates    *prometheus.CounterVec
	compiles   prometheus.Counter
	panics     *prometheus.CounterVec
}

// New registers the metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_admission_requests_total",
			Help: "Admission requests by webhook (mutate, validate), kind, operation and decision (allowed, denied, patched, dryrun, error, skipped, overloaded).",
		}, []string{"webhook", "kind", "operation", "decision"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_violations_total",
			Help: "Rule violations found, by kind, rule code and action (deny, warn, dryrun).",
		}, []string{"kind", "code", "action"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_mutations_total",
			Help: "Mutations asked for, by kind, intent type, the rule code they fix and action (deny and warn: applied; dryrun: recorded only).",
		}, []string{"kind", "type", "code", "action"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egress_guard_admission_duration_seconds",
			Help:    "Time to decide an admission request, by webhook and kind.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
		}, []string{"webhook", "kind"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_policy_reloads_total",
			Help: "Reloads of the configuration and policies, by result (success, failure).",
		}, []string{"result"}),
		inventory: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egress_guard_inventory_service_entries",
			Help: "ServiceEntries in the policies' inventory in force (serve --inventory).",
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_inventory_updates_total",
			Help: "Inventory updates swapped into the engine (data only, no compile), by result (success, failure).",
		}, []string{"result"}),
		compiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egress_guard_policy_compiles_total",
			Help: "Compilations of the configuration and policies (a changed file), good or bad; inventory updates compile nothing.",
		}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_panics_total",
			Help: "Panics recovered while answering a request, each answered with an error, by where they happened (decode, input, evaluate, mutate, diff, handler, http).",
		}, []string{"where"}),
	}
	reg.MustRegister(m.requests, m.violations, m.mutations, m.duration, m.reloads, m.inventory, m.updates, m.compiles, m.panics)
	return m
}

// Request records one admission decision.
func (m *Metrics) Request(webhook, kind, operation, decision string, took time.Duration) {
	m.requests.WithLabelValues(webhook, kind, operation, decision).Inc()
	m.duration.WithLabelValues(webhook, kind).Observe(took.Seconds())
}

// Violation records one violation.
func (m *Metrics) Violation(kind, code, action string) {
	m.violations.WithLabelValues(kind, code, action).Inc()
}

// Mutation records one mutation intent.
func (m *Metrics) Mutation(kind, intentType, code, action string) {
	m.mutations.WithLabelValues(kind, intentType, code, action).Inc()
}

// Panic records a recovered panic.
func (m *Metrics) Panic(where string) { m.panics.WithLabelValues(where).Inc() }

// Reload records a reload attempt.
func (m *Metrics) Reload(ok bool) { m.reloads.WithLabelValues(result(ok)).Inc() }

// Compile records a compilation of the configuration and policies.
func (m *Metrics) Compile() { m.compiles.Inc() }

// InventoryUpdate records an inventory update: its ServiceEntries when it
// took effect.
func (m *Metrics) InventoryUpdate(serviceEntries int, ok bool) {
	m.updates.WithLabelValues(result(ok)).Inc()
	if ok {
		m.inventory.Set(float64(serviceEntries))
	}
}

func result(ok bool) string {
	if ok {
		return "success"
	}
	return "failure"
}
