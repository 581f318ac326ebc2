// Package server wires the admission handlers into controller-runtime's
// webhook server (TLS with the certificate of a certs.Source), serves health
// and Prometheus metrics, and reloads configuration and policies.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/certs"
	"github.com/egress-guard/egress-guard/webhook/audit"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/guard"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/inventory"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// Paths served on the webhook port.
const (
	MutatePath   = "/mutate"
	ValidatePath = "/validate"
	HealthzPath  = "/healthz"
	ReadyzPath   = "/readyz"
)

// DefaultConcurrentPerCPU is how many admission requests serve evaluates at
// once per CPU by default. A decision takes tens of microseconds, so this is
// room for a burst from the API server, not parallelism; beyond it a request
// is refused (HTTP 429) rather than queued.
const DefaultConcurrentPerCPU = 10

// Options configure the server.
type Options struct {
	BindAddress string
	Port        int
	// Certs provides the serving certificate; Run starts it, and /readyz
	// fails while it has no valid certificate.
	Certs certs.Source
	// ConfigFile is the EgressGuardConfig ("" = embedded default).
	ConfigFile string
	// PolicyDirs hold the platform's .rego files.
	PolicyDirs []string
	// MetricsBindAddress serves /metrics ("0" disables).
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz over plain HTTP ("0" disables).
	HealthProbeBindAddress string
	// ReloadInterval is how often the config and policy files are checked.
	ReloadInterval time.Duration
	// MaxRequestBytes bounds an AdmissionReview body.
	MaxRequestBytes int64
	// MaxObjectBytes bounds the object evaluated.
	MaxObjectBytes int
	// EvaluationTimeout bounds the work on one request (0:
	// handler.DefaultEvaluationTimeout); the timeout the API
	// server puts on the URL, less a margin, shortens it.
	EvaluationTimeout time.Duration
	// MaxConcurrentRequests is how many admission requests are evaluated at
	// once (0: DefaultConcurrentPerCPU per CPU); beyond them a request is
	// answered with HTTP 429 at once.
	MaxConcurrentRequests int
	// HTTP bounds the webhook server's connections (a zero field: its
	// default).
	HTTP HTTPTimeouts
	// PprofBindAddress serves net/http/pprof ("" or "0" disables).
	PprofBindAddress string
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration
	// REST reaches the API server (nil: no API access). With it, serve runs
	// the periodic audit the configuration asks for, leader-elected.
	REST *rest.Config
	// Events records Events on objects for warn and dryrun decisions
	// (needs REST).
	Events bool
	// Inventory keeps the cluster's ServiceEntries as data.inventory (needs
	// REST); /readyz waits for their first sync.
	Inventory bool
	// LeaderElectionNamespace and AuditLeaderElectionID name the audit's
	// Lease (namespace default: the pod's).
	LeaderElectionNamespace string
	AuditLeaderElectionID   string
	Log                     logr.Logger
}

// Run serves until ctx ends. It refuses to start when the configuration or
// policies do not load.
func Run(ctx context.Context, o Options) error {
	if o.Certs == nil {
		return errors.New("no serving certificate source")
	}
	log := o.Log
	m := metrics.New(crmetrics.Registry)
	holder := &Holder{configFile: o.ConfigFile, policyDirs: o.PolicyDirs, log: log.WithName("reload"), metrics: m}
	if err := holder.Load(ctx); err != nil {
		return err
	}
	log.Info("policies loaded", "config", displayConfig(o.ConfigFile), "enforcement", holder.Get().Config().Enforcement, "modules", len(holder.Get().Modules()))

	evaluation := o.EvaluationTimeout
	if evaluation <= 0 {
		evaluation = handler.DefaultEvaluationTimeout
	}
	timeouts := o.HTTP.withDefaults()
	if err := timeouts.Validate(evaluation); err != nil {
		return err
	}
	var recorder record.EventRecorder
	if o.Events {
		if o.REST == nil {
			return errors.New("events need API access")
		}
		clients, err := kubernetes.NewForConfig(o.REST)
		if err != nil {
			return err
		}
		broadcaster := record.NewBroadcaster()
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clients.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		recorder = broadcaster.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "egress-guard"})
	}
	concurrent := o.MaxConcurrentRequests
	if concurrent <= 0 {
		concurrent = DefaultConcurrentPerCPU * runtime.GOMAXPROCS(0)
	}
	deps := handler.Deps{
		Recorder: recorder,
		Engine:   func() guard.Engine { return holder.Get() },
		Metrics:  m, Log: log.WithName("admission"), MaxObjectBytes: o.MaxObjectBytes,
		EvaluationTimeout: evaluation,
		Limit:             handler.NewLimit(concurrent),
	}
	mutate, validate := endpoints(deps, o.MaxRequestBytes)
	// controller-runtime's webhook server only lends its mux, which counts
	// requests per path (controller_runtime_webhook_*); tlsServer serves it.
	hooks := webhook.NewServer(webhook.Options{Host: o.BindAddress, Port: o.Port})
	hooks.Register(MutatePath, mutate)
	hooks.Register(ValidatePath, validate)
	port := o.Port
	if port == 0 {
		port = webhook.DefaultPort
	}
	srv := newTLSServer(o.BindAddress, port, hooks.WebhookMux(), &tls.Config{
		NextProtos:     []string{"h2", "http/1.1"},
		MinVersion:     tls.VersionTLS12,
		GetCertificate: o.Certs.GetCertificate,
	}, timeouts, o.ShutdownTimeout, log.WithName("webhook-server"))

	ready := &healthz.Handler{Checks: map[string]healthz.Checker{
		"webhook":     srv.StartedChecker(),
		"policies":    holder.Checker(),
		"certificate": func(*http.Request) error { return o.Certs.Healthy() },
	}}
	var watcher *inventory.Watcher
	if o.Inventory {
		if o.REST == nil {
			return errors.New("the inventory needs API access")
		}
		var err error
		if watcher, err = inventory.New(o.REST, holder.Get().Config().Gateway.Namespace); err != nil {
			return err
		}
		ready.Checks["inventory"] = holder.InventoryChecker()
	}
	live := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
	hooks.Register(HealthzPath, http.StripPrefix(HealthzPath, live))
	hooks.Register(ReadyzPath, http.StripPrefix(ReadyzPath, ready))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return o.Certs.Start(ctx) })
	g.Go(func() error { return srv.Start(ctx) })
	g.Go(func() error { holder.Watch(ctx, o.ReloadInterval); return nil })
	if watcher != nil {
		g.Go(func() error { return watcher.Start(ctx) })
		g.Go(func() error { followInventory(ctx, watcher, holder, log.WithName("inventory")); return nil })
	}
	if o.REST != nil && o.LeaderElectionNamespace == "" && !inCluster() && holder.Get().Config().Audit.Every() == 0 {
		log.Info("no periodic audit: outside a cluster it needs --leader-election-namespace")
	} else if o.REST != nil {
		periodic, err := audit.NewPeriodic(audit.PeriodicOptions{
			REST:                    o.REST,
			Config:                  func() *config.Config { return holder.Get().Config() },
			PolicyDirs:              o.PolicyDirs,
			LeaderElectionNamespace: o.LeaderElectionNamespace,
			LeaderElectionID:        o.AuditLeaderElectionID,
			Registerer:              crmetrics.Registry,
			Log:                     log.WithName("audit"),
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return periodic.Start(ctx) })
	}
	if o.MetricsBindAddress != "0" && o.MetricsBindAddress != "" {
		ms, err := metricsserver.NewServer(metricsserver.Options{BindAddress: o.MetricsBindAddress}, nil, nil)
		if err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
		g.Go(func() error { return ms.Start(ctx) })
	}
	if o.HealthProbeBindAddress != "0" && o.HealthProbeBindAddress != "" {
		mux := http.NewServeMux()
		mux.Handle(HealthzPath, http.StripPrefix(HealthzPath, live))
		mux.Handle(HealthzPath+"/", http.StripPrefix(HealthzPath, live))
		mux.Handle(ReadyzPath, http.StripPrefix(ReadyzPath, ready))
		mux.Handle(ReadyzPath+"/", http.StripPrefix(ReadyzPath, ready))
		g.Go(func() error { return serveHTTP(ctx, o.HealthProbeBindAddress, mux, o.ShutdownTimeout) })
	}
	if o.PprofBindAddress != "0" && o.PprofBindAddress != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		g.Go(func() error { return serveHTTP(ctx, o.PprofBindAddress, mux, o.ShutdownTimeout) })
	}
	log.Info("serving", "address", net.JoinHostPort(o.BindAddress, fmt.Sprint(port)), "certificates", fmt.Sprint(o.Certs),
		"maxConcurrentRequests", concurrent, "evaluationTimeout", evaluation)
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// endpoints are the two admission endpoints as served: limitBody in front of
// controller-runtime's admission.Webhook and the handlers.
func endpoints(deps handler.Deps, maxRequestBytes int64) (mutate, validate http.Handler) {
	front := frontOptions{maxBytes: maxRequestBytes, metrics: deps.Metrics, log: deps.Log.WithName("http")}
	recoverPanic := false
	wrap := func(h admission.Handler) http.Handler {
		return limitBody(front, &admission.Webhook{
			Handler: h,
			// A panic goes up to limitBody, which answers for the request,
			// logs and counts it.
			RecoverPanic: &recoverPanic,
			// Without a request (a review it could not decode) the webhook
			// would log an error with a stack trace; limitBody logs such a
			// refusal in one line.
			LogConstructor: func(base logr.Logger, req *admission.Request) logr.Logger {
				if req == nil {
					return logr.Discard()
				}
				return base
			},
		})
	}
	return wrap(&handler.Mutating{Deps: deps}), wrap(&handler.Validating{Deps: deps})
}

// followInventory puts in force an engine with the cluster's ServiceEntries
// after the first sync and after every change (many changes at once give one
// build).
func followInventory(ctx context.Context, w *inventory.Watcher, h *Holder, log logr.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Changes():
		}
		inv, err := w.Snapshot(ctx)
		if err == nil {
			err = h.Refresh(ctx, inv)
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Error(err, "updating the inventory; keeping the last one")
			}
			continue
		}
		log.V(1).Info("inventory updated", "serviceEntries", len(inv.ServiceEntries))
	}
}

// inCluster reports whether serve runs in a pod, where the Leases default to
// the pod's namespace.
func inCluster() bool {
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	return err == nil
}

func serveHTTP(ctx context.Context, addr string, h http.Handler, shutdownTimeout time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health probes: %w", err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = s.Shutdown(sctx)
	}()
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func displayConfig(path string) string {
	if path == "" {
		return "embedded default"
	}
	return path
}
