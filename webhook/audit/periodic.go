package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

// DefaultLeaderElectionID names the Lease of the replica that audits.
const DefaultLeaderElectionID = "egress-guard-audit"

// idleCheck is how often an idle auditor (interval 0) looks at the
// configuration again, since a reload may turn the audit on.
const idleCheck = 30 * time.Second

// PeriodicOptions configure the periodic audit of serve.
type PeriodicOptions struct {
	// REST reaches the API server.
	REST *rest.Config
	// Config is the configuration in force (it changes on reload).
	Config func() *config.Config
	// PolicyDirs are the platform's policy directories.
	PolicyDirs []string
	// LeaderElectionNamespace and LeaderElectionID name the Lease: only
	// its holder audits and writes reports.
	LeaderElectionNamespace string
	LeaderElectionID        string
	Registerer              prometheus.Registerer
	Log                     logr.Logger
}

// Periodic audits the cluster at the configured interval on the replica
// that holds the Lease, and writes the reports.
type Periodic struct {
	opts    PeriodicOptions
	mgr     manager.Manager
	dyn     dynamic.Interface
	runs    *prometheus.CounterVec
	last    *prometheus.GaugeVec
	elapsed prometheus.Gauge
}

// NewPeriodic prepares the periodic audit.
func NewPeriodic(o PeriodicOptions) (*Periodic, error) {
	if o.REST == nil || o.Config == nil {
		return nil, errors.New("periodic audit: no API server configuration or no config")
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
	mgr, err := manager.New(o.REST, manager.Options{
		LeaderElection:                true,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		Logger:                        o.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("periodic audit: %w", err)
	}
	dyn, err := dynamic.NewForConfig(o.REST)
	if err != nil {
		return nil, err
	}
	p := &Periodic{
		opts: o, mgr: mgr, dyn: dyn,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egress_guard_audit_runs_total",
			Help: "Audits of the cluster, by result (success, failure).",
		}, []string{"result"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "egress_guard_audit_findings",
			Help: "Findings of the last audit, by rule code and result (fail, warn).",
		}, []string{"code", "result"}),
		elapsed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egress_guard_audit_duration_seconds",
			Help: "Duration of the last audit.",
		}),
	}
	if o.Registerer != nil {
		if err := registerAll(o.Registerer, p.runs, p.last, p.elapsed); err != nil {
			return nil, err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(p.loop)); err != nil {
		return nil, err
	}
	return p, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("periodic audit metrics: %w", err)
		}
	}
	return nil
}

// Start runs the leader election and, while leading, the audits, until ctx
// ends.
func (p *Periodic) Start(ctx context.Context) error { return p.mgr.Start(ctx) }

// loop runs on the leader: an audit right away, then one per interval.
func (p *Periodic) loop(ctx context.Context) error {
	p.opts.Log.Info("leading: this replica audits the cluster", "lease", p.opts.LeaderElectionNamespace+"/"+p.opts.LeaderElectionID)
	for {
		wait := p.opts.Config().Audit.Every()
		if wait > 0 {
			if err := p.Once(ctx); err != nil {
				p.opts.Log.Error(err, "audit failed")
			}
		} else {
			wait = idleCheck
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Once audits the cluster and writes the reports.
func (p *Periodic) Once(ctx context.Context) error {
	start := time.Now()
	err := p.once(ctx)
	result := "success"
	if err != nil {
		result = "failure"
	}
	p.runs.WithLabelValues(result).Inc()
	p.elapsed.Set(time.Since(start).Seconds())
	return err
}

func (p *Periodic) once(ctx context.Context) error {
	cfg := p.opts.Config()
	docs, err := ListObjects(ctx, p.dyn, cfg.AllPoliced(), "")
	if err != nil {
		return err
	}
	inv, err := ClusterInventory(ctx, p.dyn, docs, cfg)
	if err != nil {
		return err
	}
	e, err := engine.New(ctx, engine.Options{Config: cfg, PolicyDirs: p.opts.PolicyDirs, Inventory: inv})
	if err != nil {
		return err
	}
	a, err := Run(ctx, e, docs, Options{})
	if err != nil {
		return err
	}
	reps := Reports(a)
	if err := WriteReports(ctx, p.dyn, ReportAPI(cfg.Audit.ReportAPI), reps, Prune{Enabled: true}); err != nil {
		return err
	}
	s := Summarize(a)
	p.last.Reset()
	for _, ns := range s.Namespaces {
		for _, rc := range ns.Rules {
			p.last.WithLabelValues(rc.Code, string(Fail)).Add(float64(rc.Fail))
			p.last.WithLabelValues(rc.Code, string(Warn)).Add(float64(rc.Warn))
		}
	}
	p.opts.Log.Info("audited the cluster", "objects", s.Objects, "compliant", s.Compliant, "withFindings", s.WithFindings,
		"fail", s.Fail, "warn", s.Warn, "reports", len(reps), "reportAPI", cfg.Audit.ReportAPI)
	return nil
}
