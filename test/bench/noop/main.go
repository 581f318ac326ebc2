// Command noop is the benchmark's baseline: a controller-runtime webhook
// server that admits everything. It serves /mutate and /validate with a
// handler returning admission.Allowed(""), and /readyz, over the same TLS
// setup egress-guard uses, so that the benchmark measures what egress-guard
// adds on top of the framework.
//
// Its Go GC target is set as `egress-guard serve` sets its own: the
// --gc-percent flag (serve's default) unless GOGC is set. The bench sets
// GOGC for both servers, so that both run with the same target.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func main() {
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	host := flag.String("bind-address", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 9443, "port to listen on")
	gcPercent := flag.Int("gc-percent", 400, "Go GC target percentage unless GOGC is set (as egress-guard serve's flag of that name)")
	flag.Parse()
	if os.Getenv("GOGC") == "" && *gcPercent > 0 {
		debug.SetGCPercent(*gcPercent)
	}

	// Without a logger, controller-runtime keeps a pending log promise per
	// request and the baseline's memory grows for no reason of its own.
	log.SetLogger(logr.Discard())

	srv := webhook.NewServer(webhook.Options{Host: *host, Port: *port, CertDir: *certDir})
	allow := &webhook.Admission{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})}
	srv.Register("/mutate", allow)
	srv.Register("/validate", allow)
	srv.WebhookMux().HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}
