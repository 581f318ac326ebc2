package app

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/egress-guard/egress-guard/webhook/handler"
	"github.com/egress-guard/egress-guard/webhook/server"
)

func newServeCommand() *cobra.Command {
	o := server.Options{}
	cf := certFlags{}
	zapOpts := zap.Options{}
	gcPercent := 0
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
			if os.Getenv("GOGC") == "" && gcPercent > 0 {
				debug.SetGCPercent(gcPercent)
			}
			return server.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BindAddress, "bind-address", "", "address the webhook server listens on (default all)")
	f.IntVar(&o.Port, "port", 9443, "webhook server port")
	cf.bind(f)
	f.StringVar(&o.ConfigFile, "config", "", "EgressGuardConfig file (default: the embedded default)")
	f.StringArrayVar(&o.PolicyDirs, "policies", nil, "directory of platform .rego policies (repeatable)")
	f.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Prometheus /metrics address (0 disables)")
	f.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "plain-HTTP /healthz and /readyz address (0 disables)")
	f.DurationVar(&o.ReloadInterval, "reload-interval", 10*time.Second, "how often to check the config and policy files for changes (0 disables)")
	f.Int64Var(&o.MaxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "largest AdmissionReview body accepted")
	f.IntVar(&o.MaxObjectBytes, "max-object-bytes", handler.DefaultMaxObjectBytes, "largest object evaluated; larger ones are denied")
	f.StringVar(&o.PprofBindAddress, "pprof-bind-address", "0", "net/http/pprof address for profiling (0 disables)")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to drain requests on shutdown")
	f.IntVar(&gcPercent, "gc-percent", 400, "Go GC target percentage unless GOGC is set: the live heap is small and each request's garbage large, so a higher target trades a few MiB for CPU")
	goFlags := flagSetFor(&zapOpts)
	f.AddGoFlagSet(goFlags)
	return cmd
}
