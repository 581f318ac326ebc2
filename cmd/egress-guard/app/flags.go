package app

import (
	"flag"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// flagSetFor exposes the zap logger's flags (--zap-log-level, ...).
func flagSetFor(o *zap.Options) *flag.FlagSet {
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	o.BindFlags(fs)
	return fs
}
