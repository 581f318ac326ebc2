package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/egress-guard/egress-guard/test/harness"
)

const (
	webhookConfigName = "egress-guard-demo"
	probeNamespace    = "egress-guard-demo-probe"
)

type options struct {
	guardBin  string
	scenarios string
	kubectl   string
}

// demo holds what is running.
type demo struct {
	opts     options
	p        *printer
	cp       *harness.ControlPlane
	certs    *harness.Certs
	webhooks *harness.Webhooks
	guard    *harness.Guard
	results  []*scenarioResult
}

// run starts the control plane and the webhooks and runs every scenario.
func (d *demo) run(ctx context.Context) int {
	bin, err := harness.CheckGuardBinary(d.opts.guardBin)
	if err != nil {
		d.p.line("error: -egress-guard: %v", err)
		return 2
	}
	d.opts.guardBin = bin
	d.p.title("egress-guard demo: Istio objects through a real kube-apiserver and the webhook")

	if err := d.setup(ctx); err != nil {
		if ctx.Err() == nil {
			d.p.line("error: %v", err)
		}
		return 1
	}
	root := d.opts.scenarios
	if root == "" {
		root = filepath.Join(d.cp.Root, "test", "scenarios")
	}
	dirs, err := harness.ScenarioDirs(root)
	if err != nil {
		d.p.line("error: %v", err)
		return 1
	}
	for i, dir := range dirs {
		d.p.scenarioHeader(i+1, len(dirs), filepath.Base(dir))
		res := d.runScenario(ctx, dir)
		d.results = append(d.results, res)
		if ctx.Err() != nil {
			return 130
		}
		if res.err != nil {
			d.p.line("error: %v", res.err)
			if d.guard != nil {
				d.p.block("egress-guard output (last lines):", d.guard.Logs(30))
			}
		}
		if err := d.stopGuard(); err != nil {
			res.err = errors.Join(res.err, err)
		}
	}
	if ctx.Err() != nil {
		return 130
	}
	rolloutErr := d.rollout(ctx)
	if rolloutErr != nil && ctx.Err() == nil {
		d.p.line("error: %v", rolloutErr)
		if d.guard != nil {
			d.p.block("egress-guard output (last lines):", d.guard.Logs(30))
		}
	}
	rolloutErr = errors.Join(rolloutErr, d.stopGuard())
	if ctx.Err() != nil {
		return 130
	}
	if !d.p.summary(d.results) || rolloutErr != nil {
		return 1
	}
	return 0
}

// setup starts the control plane, writes the certificates and registers
// the webhooks.
func (d *demo) setup(ctx context.Context) error {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, assets); err == nil && !strings.HasPrefix(rel, "..") {
			assets = rel
		}
	}
	step := d.p.begin("starting the control plane: etcd + kube-apiserver (%s), Istio's CRDs", assets)
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Kubectl: d.opts.kubectl})
	step.end(err)
	if err != nil {
		return err
	}
	d.cp = cp
	d.p.detail("kube-apiserver at %s", cp.APIServerURL())
	d.p.detail("admin kubeconfig (while the demo runs): %s", cp.Kubeconfig)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	step = d.p.begin("writing a CA and the webhook's serving certificate for 127.0.0.1")
	d.certs, err = harness.WriteServingCerts(filepath.Join(cp.Dir, "certs"))
	step.end(err)
	if err != nil {
		return err
	}

	step = d.p.begin("registering the Mutating- and ValidatingWebhookConfiguration %q", webhookConfigName)
	d.webhooks, err = harness.InstallWebhooks(ctx, cp, webhookConfigName, probeNamespace, d.certs.CAPEM)
	step.end(err)
	if err != nil {
		return err
	}
	d.p.detail("ServiceEntry, VirtualService, DestinationRule; CREATE and UPDATE; failurePolicy Fail")
	return nil
}

// runScenario runs one scenario directory; the guard it starts is left in
// d.guard for the caller to stop.
func (d *demo) runScenario(ctx context.Context, dir string) *scenarioResult {
	res := &scenarioResult{name: filepath.Base(dir)}
	start := time.Now()
	defer func() { res.took = time.Since(start) }()

	s, err := harness.LoadScenario(dir, filepath.Join(d.cp.Dir, "scenarios", res.name))
	if err != nil {
		res.err = err
		return res
	}
	if s.Summary != "" {
		d.p.paragraph(s.Summary)
	}

	step := d.p.begin("starting egress-guard with the scenario's config.yaml")
	d.guard, err = harness.StartGuard(ctx, harness.GuardOptions{
		Bin:        d.opts.guardBin,
		Certs:      d.certs,
		Config:     s.Config,
		Policies:   s.Policies,
		Kubeconfig: d.cp.Kubeconfig,
		LogPath:    filepath.Join(d.cp.Dir, res.name+".log"),
		// The cluster model, as the chart runs serve: compliant.yaml, the
		// platform's setup, is applied first, and the other files'
		// objects are judged in its world.
		Args: []string{"--inventory"},
	})
	step.end(err)
	if err != nil {
		res.err = err
		return res
	}
	d.p.detail("pid %d: egress-guard serve --config %s", d.guard.Pid(), d.rel(s.Config))
	step = d.p.begin("pointing the webhooks at %s", d.guard.URL())
	err = d.webhooks.Point(ctx, d.guard.URL())
	step.end(err)
	if err != nil {
		res.err = err
		return res
	}
	if res.err = d.createNamespaces(ctx, s.Namespaces()); res.err != nil {
		return res
	}

	files := []struct {
		name   string
		docs   []*harness.Doc
		expect outcome
	}{
		{"compliant.yaml", s.Compliant, accepted},
		{"mutate.yaml", s.Mutate, mutated},
		{"rejected.yaml", s.Rejected, rejected},
	}
	var stored []*harness.Doc
	defer func() {
		if err := d.deleteObjects(ctx, stored); err != nil {
			res.err = errors.Join(res.err, err)
		}
	}()
	for _, f := range files {
		if len(f.docs) == 0 {
			continue
		}
		before, err := d.guard.ModelUpdates()
		if err != nil {
			res.err = err
			return res
		}
		d.p.fileHeader(f.name, len(f.docs), f.expect)
		for _, doc := range f.docs {
			o := d.apply(ctx, s, doc, f.expect)
			if ctx.Err() != nil {
				res.err = ctx.Err()
				return res
			}
			res.objects = append(res.objects, o)
			d.p.object(o)
			if o.got == accepted || o.got == mutated {
				stored = append(stored, doc)
			}
		}
		if f.expect == accepted {
			step := d.p.begin("waiting for egress-guard's cluster model to hold them")
			err := d.guard.WaitForModel(ctx, before, 30*time.Second)
			step.end(err)
			if err != nil {
				res.err = err
				return res
			}
		}
	}
	return res
}

// createNamespaces creates the namespaces that do not exist yet, with
// kubectl.
func (d *demo) createNamespaces(ctx context.Context, namespaces []string) error {
	step := d.p.begin("namespaces %s", strings.Join(namespaces, ", "))
	var created []string
	for _, ns := range namespaces {
		r := d.cp.Kubectl(ctx, nil, "get", "namespace", ns, "-o", "name")
		if r.Err == nil {
			continue
		}
		if !r.NotFound() {
			step.end(r.Err)
			return fmt.Errorf("kubectl get namespace %s: %v: %s", ns, r.Err, strings.TrimSpace(r.Stderr))
		}
		if r = d.cp.Kubectl(ctx, nil, "create", "namespace", ns); r.Err != nil {
			step.end(r.Err)
			return fmt.Errorf("kubectl create namespace %s: %v: %s", ns, r.Err, strings.TrimSpace(r.Stderr))
		}
		created = append(created, ns)
	}
	step.end(nil)
	if len(created) > 0 {
		d.p.detail("$ kubectl create namespace %s", strings.Join(created, "; kubectl create namespace "))
	}
	return nil
}

// deleteObjects deletes what the scenario stored, so that the next
// scenario starts from a clean slate.
func (d *demo) deleteObjects(ctx context.Context, docs []*harness.Doc) error {
	if len(docs) == 0 || ctx.Err() != nil {
		return nil
	}
	// The ServiceEntries first, and once egress-guard's model no longer
	// holds them the rest: while a ServiceEntry registers an external
	// host, deleting the route that takes it through the gateway is
	// refused (EGR204).
	var entries, rest []*harness.Doc
	for _, doc := range docs {
		if doc.Obj.GetKind() == "ServiceEntry" {
			entries = append(entries, doc)
		} else {
			rest = append(rest, doc)
		}
	}
	step := d.p.begin("deleting the %d stored objects (kubectl delete), the ServiceEntries first", len(docs))
	err := d.kubectlDelete(ctx, entries)
	if err == nil && len(entries) > 0 && d.guard != nil {
		var before float64
		if before, err = d.guard.ModelUpdates(); err == nil {
			// The deletions may be in the model already: a swap after
			// them, or none within a second, will do.
			if werr := d.guard.WaitForModel(ctx, before, time.Second); werr != nil && ctx.Err() != nil {
				err = werr
			}
		}
	}
	if err == nil {
		err = d.kubectlDelete(ctx, rest)
	}
	step.end(err)
	return err
}

// kubectlDelete deletes the objects of docs with one kubectl delete.
func (d *demo) kubectlDelete(ctx context.Context, docs []*harness.Doc) error {
	if len(docs) == 0 {
		return nil
	}
	args := []string{"delete", "--ignore-not-found", "--wait=true", "--timeout=30s"}
	for _, doc := range docs {
		args = append(args, "-f", doc.Path)
	}
	if r := d.cp.Kubectl(ctx, nil, args...); r.Err != nil {
		return fmt.Errorf("kubectl delete: %v: %s", r.Err, strings.TrimSpace(r.Stderr))
	}
	return nil
}

func (d *demo) stopGuard() error {
	if d.guard == nil {
		return nil
	}
	step := d.p.begin("stopping egress-guard (pid %d)", d.guard.Pid())
	err := d.guard.Stop()
	step.end(err)
	d.guard = nil
	return err
}

// shutdown stops whatever is still running.
func (d *demo) shutdown() error {
	err := d.stopGuard()
	if d.cp != nil {
		d.p.blank()
		step := d.p.begin("stopping the control plane")
		cerr := d.cp.Stop()
		step.end(cerr)
		err = errors.Join(err, cerr)
		d.cp = nil
	}
	return err
}

// rel shows path relative to the repository root when it is inside it.
func (d *demo) rel(path string) string {
	if r, err := filepath.Rel(d.cp.Root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}
