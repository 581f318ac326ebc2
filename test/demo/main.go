// Command demo shows egress-guard at work in a local cluster: `make demo`.
//
// It starts a control plane (etcd and kube-apiserver from $KUBEBUILDER_ASSETS,
// with Istio's CRDs), registers egress-guard as a mutating and a validating
// admission webhook, and then, for each scenario in test/scenarios in order,
// starts `egress-guard serve` with the scenario's config.yaml, points the
// webhooks at it, creates the scenario's namespaces and applies every object
// of compliant.yaml, mutate.yaml and rejected.yaml with `kubectl apply`, one
// object at a time. For each object it prints what happened:
//
//	ACCEPTED  stored as submitted
//	MUTATED   stored changed by the webhook; a unified diff of the submitted
//	          and the stored .spec (YAML) follows
//	REJECTED  refused; kubectl's error message, which names the rule codes
//
// with kubectl's warnings. A summary table counts the outcomes per scenario
// and checks them against the scenario's intent: compliant.yaml accepted
// unchanged, mutate.yaml mutated into mutate-expected.yaml, rejected.yaml
// rejected with the codes its objects list.
//
// Then it shows a dry-run rollout: scenario 000's objects applied with the
// guard in dry run (all admitted, warnings for a warn rule, Events), and
// `egress-guard audit` writing OpenReports Reports and an HTML and a
// Markdown report under .cache/demo. The exit status is 1 when an object did
// not behave as expected or the rollout failed, 130 when interrupted.
//
// Everything runs on 127.0.0.1 and is stopped at the end, also on Ctrl-C.
//
//	go run ./test/demo -egress-guard bin/egress-guard
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var opts options
	flag.StringVar(&opts.guardBin, "egress-guard", "", "the egress-guard binary (required)")
	flag.StringVar(&opts.scenarios, "scenarios", "", "scenarios directory (default: test/scenarios of the repository)")
	flag.StringVar(&opts.kubectl, "kubectl", "", "kubectl binary (default: $KUBECTL, else kubectl on the PATH)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./test/demo -egress-guard bin/egress-guard [flags]\n\n"+
			"Needs KUBEBUILDER_ASSETS naming a directory with kube-apiserver and etcd (make tools).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, opts, newPrinter(os.Stdout))
	stop()
	os.Exit(code)
}

// run sets everything up, runs the scenarios, prints the summary and tears
// everything down again. It returns the exit status.
func run(ctx context.Context, opts options, p *printer) int {
	d := &demo{opts: opts, p: p}
	code := d.run(ctx)
	if ctx.Err() != nil {
		p.blank()
		p.line("interrupted: stopping everything")
		code = 130
	}
	if err := d.shutdown(); err != nil {
		p.line("error while stopping: %v", err)
		code = max(code, 1)
	}
	return code
}
