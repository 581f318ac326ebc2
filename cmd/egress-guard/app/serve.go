package app

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/egress-guard/egress-guard/webhook/audit"
	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/server"
)

// apiAccess gives serve a client configuration when something needs the API
// server: self-managed certificates, --events, --inventory, an explicit --kubeconfig,
// or the configuration's periodic audit. With one, serve also runs the audit
// loop (idle while audit.interval is 0).
func apiAccess(cmd *cobra.Command, o *server.Options, cf *certFlags) error {
	need := cf.mode == certsSelfManaged || o.Events || o.Inventory || cmd.Flags().Changed("kubeconfig")
	if !need {
		cfg, err := loadConfig(o.ConfigFile)
		if err != nil {
			return usageError("%v", err)
		}
		need = cfg.Audit.Every() > 0
	}
	if !need {
		return nil
	}
	if cf.leNamespace != "" {
		if errs := validation.IsDNS1123Label(cf.leNamespace); len(errs) > 0 {
			return usageError("--leader-election-namespace %q: %s", cf.leNamespace, strings.Join(errs, "; "))
		}
	}
	rc, err := restConfig(cf.kubeconfig)
	if err != nil {
		return usageError("%v", err)
	}
	o.REST = rc
	o.LeaderElectionNamespace = cf.leNamespace
	if o.LeaderElectionNamespace == "" && cf.mode == certsSelfManaged {
		ref, err := parseSecretRef(cf.secret)
		if err != nil {
			return err
		}
		o.LeaderElectionNamespace = ref.Namespace
	}
	return nil
}

// checkBounds refuses request bounds that cannot work.
func checkBounds(o *server.Options) error {
	if o.EvaluationTimeout <= 0 {
		return usageError("--evaluation-timeout %s: must be positive", o.EvaluationTimeout)
	}
	if o.MaxConcurrentRequests < 0 {
		return usageError("--max-concurrent-requests %d: must not be negative", o.MaxConcurrentRequests)
	}
	if err := o.HTTP.Validate(o.EvaluationTimeout); err != nil {
		return usageError("%v", err)
	}
	return nil
}

func newServeCommand() *cobra.Command {
	o := server.Options{}
	cf := certFlags{}
	zapOpts := zap.Options{}
	gcPercent := 0
	memLimit := ""
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the mutating and validating admission webhooks over TLS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Set before serving: without a logger controller-runtime keeps a
			// log promise per request.
			log := zap.New(zap.UseFlagOptions(&zapOpts))
			ctrl.SetLogger(log)
			o.Log = log.WithName("egress-guard")
			src, err := cf.source(cmd.Flags(), log.WithName("certs"))
			if err != nil {
				return err
			}
			o.Certs = src
			if err := checkBounds(&o); err != nil {
				return err
			}
			if err := apiAccess(cmd, &o, &cf); err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" && gcPercent > 0 {
				debug.SetGCPercent(gcPercent)
			}
			if os.Getenv("GOMEMLIMIT") == "" {
				limit, from, err := memoryLimit(memLimit, readFile)
				if err != nil {
					return usageError("%v", err)
				}
				if limit > 0 {
					debug.SetMemoryLimit(limit)
				}
				log.Info("Go memory limit", "bytes", limit, "from", from)
			}
			return server.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BindAddress, "bind-address", "", "address the webhook server listens on (default all)")
	f.IntVar(&o.Port, "port", 9443, "webhook server port")
	cf.bind(f)
	f.BoolVar(&o.Events, "events", false, "record Kubernetes Events on objects for warn and dry-run decisions")
	f.BoolVar(&o.Inventory, "inventory", false, "keep the cluster's ServiceEntries as the policies' inventory (list and watch on serviceentries); /readyz waits for their first sync")
	f.StringVar(&o.AuditLeaderElectionID, "audit-leader-election-id", audit.DefaultLeaderElectionID, "name of the Lease of the replica that runs the periodic audit (audit.interval in the config)")
	f.StringVar(&o.ConfigFile, "config", "", "EgressGuardConfig file (default: the embedded default)")
	f.StringArrayVar(&o.PolicyDirs, "policies", nil, "directory of platform .rego policies (repeatable)")
	f.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Prometheus /metrics address (0 disables)")
	f.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "plain-HTTP /healthz and /readyz address (0 disables)")
	f.DurationVar(&o.ReloadInterval, "reload-interval", 10*time.Second, "how often to check the config and policy files for changes (0 disables)")
	f.Int64Var(&o.MaxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "largest AdmissionReview body accepted")
	f.IntVar(&o.MaxObjectBytes, "max-object-bytes", handler.DefaultMaxObjectBytes, "largest object evaluated; larger ones are denied")
	f.DurationVar(&o.EvaluationTimeout, "evaluation-timeout", handler.DefaultEvaluationTimeout, "longest the work on one admission request may take, waiting for a worker included; the API server's own timeout (?timeout= on the URL), less a margin, shortens it. A request past it is refused with an error")
	f.IntVar(&o.MaxConcurrentRequests, "max-concurrent-requests", 0, fmt.Sprintf("admission requests evaluated at once; beyond them the server answers HTTP 429 with Retry-After, and the API server retries or applies the webhook's failurePolicy (0: %d per CPU)", server.DefaultConcurrentPerCPU))
	f.DurationVar(&o.HTTP.ReadHeader, "read-header-timeout", server.DefaultReadHeaderTimeout, "webhook server: longest wait for a request's headers")
	f.DurationVar(&o.HTTP.Read, "read-timeout", server.DefaultReadTimeout, "webhook server: longest wait for a whole request, body included")
	f.DurationVar(&o.HTTP.Write, "write-timeout", server.DefaultWriteTimeout, "webhook server: longest time from a request's headers to the end of its answer; must exceed --evaluation-timeout")
	f.DurationVar(&o.HTTP.Idle, "idle-timeout", server.DefaultIdleTimeout, "webhook server: how long a kept-alive connection may wait for its next request")
	f.StringVar(&o.PprofBindAddress, "pprof-bind-address", "0", "net/http/pprof address for profiling (0 disables)")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to drain requests on shutdown")
	f.StringVar(&memLimit, "memory-limit", "", "soft limit of the Go heap unless GOMEMLIMIT is set: a quantity (200Mi), none, or empty for 80% of the container's memory limit; past it the GC runs more often instead of the process outgrowing its container")
	f.IntVar(&gcPercent, "gc-percent", 400, "Go GC target percentage unless GOGC is set: the live heap is small and each request's garbage large, so a higher target trades a few MiB for CPU")
	goFlags := flagSetFor(&zapOpts)
	f.AddGoFlagSet(goFlags)
	return cmd
}
