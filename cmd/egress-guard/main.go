// Command egress-guard is the Istio egress admission webhook and its offline
// checker.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/egress-guard/egress-guard/cmd/egress-guard/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
