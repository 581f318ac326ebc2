package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/test/harness"
	"github.com/egress-guard/egress-guard/webhook/config"
)

// rolloutScenario is the scenario whose objects the rollout shows.
const rolloutScenario = "000-http-mtls-origination"

// rollout shows how a platform team rolls egress-guard out: with the
// scenario's configuration in dry run (and one rule in warn), every object
// is admitted as submitted; then `egress-guard audit` reports what
// enforcement would deny or change, as OpenReports Reports in the cluster and
// as an HTML report to hand to the application team.
func (d *demo) rollout(ctx context.Context) error {
	d.p.blank()
	head := "Rollout: dry run first, then an audit report for the application team "
	d.p.line("%s%s", head, strings.Repeat("-", max(3, width-len(head))))
	root := d.opts.scenarios
	if root == "" {
		root = filepath.Join(d.cp.Root, "test", "scenarios")
	}
	s, err := harness.LoadScenario(filepath.Join(root, rolloutScenario), filepath.Join(d.cp.Dir, "rollout"))
	if err != nil {
		return err
	}
	cfg, err := config.LoadFile(s.Config)
	if err != nil {
		return err
	}
	cfg.Enforcement = config.ActionDryRun
	cfg.Overrides = []config.Override{{Rules: []string{"EGR102"}, Action: config.ActionWarn}}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(d.cp.Dir, "rollout.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return err
	}
	d.p.paragraph(fmt.Sprintf("Scenario %s's configuration with enforcement: dryrun, and an override putting EGR102 in warn. "+
		"Its mutate.yaml and rejected.yaml objects are applied again: all are admitted as submitted.", rolloutScenario))

	crds := filepath.Join(d.cp.Root, "charts", "egress-guard", "files", "crds")
	step := d.p.begin("installing the report CRDs the chart ships (%s)", d.rel(crds))
	r := d.cp.Kubectl(ctx, nil, "apply", "--server-side", "-f", crds)
	if r.Err == nil {
		r = d.cp.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/reports.openreports.io", "crd/policyreports.wgpolicyk8s.io")
	}
	step.end(r.Err)
	if r.Err != nil {
		return fmt.Errorf("%s", errorLines(r))
	}

	step = d.p.begin("starting egress-guard in dry run, with Events")
	d.guard, err = harness.StartGuard(ctx, harness.GuardOptions{
		Bin: d.opts.guardBin, Certs: d.certs, Config: cfgPath, Kubeconfig: d.cp.Kubeconfig,
		LogPath: filepath.Join(d.cp.Dir, "rollout.log"), Args: []string{"--events", "--kubeconfig", d.cp.Kubeconfig},
	})
	step.end(err)
	if err != nil {
		return err
	}
	d.p.detail("egress-guard serve --config %s --events", d.rel(cfgPath))
	if err := d.webhooks.Point(ctx, d.guard.URL()); err != nil {
		return err
	}
	if err := d.createNamespaces(ctx, s.Namespaces()); err != nil {
		return err
	}
	var stored []*harness.Doc
	defer func() { _ = d.deleteObjects(ctx, stored) }()
	d.p.blank()
	d.p.line("  $ kubectl apply -f -      (each object of mutate.yaml and rejected.yaml)")
	for _, doc := range append(slices.Clone(s.Mutate), s.Rejected...) {
		r := d.cp.Kubectl(ctx, doc.Raw, "apply", "-f", "-")
		if r.Err != nil {
			return fmt.Errorf("dry run: %s was refused: %s", doc.Ref(), errorLines(r))
		}
		stored = append(stored, doc)
		d.p.line("    %-9s %s", "ADMITTED", doc.Ref())
		for _, w := range r.Warnings() {
			d.p.line("%s", wrapHanging(w, "              warning: ", "                       ", width))
		}
	}

	out := filepath.Join(d.cp.Root, ".cache", "demo")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	html, md := filepath.Join(out, "audit-report.html"), filepath.Join(out, "audit-report.md")
	args := []string{"audit", "--kubeconfig", d.cp.Kubeconfig, "--config", cfgPath, "--write-reports", "--report", html, "--report", md}
	d.p.blank()
	d.p.line("  $ egress-guard audit --config %s --write-reports --report %s --report %s", d.rel(cfgPath), d.rel(html), d.rel(md))
	cmd := exec.CommandContext(ctx, d.opts.guardBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.cp.Kubeconfig)
	text, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("egress-guard audit: %v\n%s", err, text)
	}
	d.p.line("%s", harness.Indent(strings.TrimRight(string(text), "\n"), "    "))

	d.p.blank()
	d.p.line("  $ kubectl get reports -A")
	r = d.cp.Kubectl(ctx, nil, "get", "reports", "-A")
	if r.Err != nil {
		return fmt.Errorf("%s", errorLines(r))
	}
	d.p.line("%s", harness.Indent(strings.TrimRight(r.Stdout, "\n"), "    "))
	if err := d.showEvents(ctx, s.Namespaces()); err != nil {
		return err
	}
	d.p.blank()
	d.p.line("  The HTML report, one self-contained file to send to the application team: %s", d.rel(html))
	return nil
}

// showEvents counts the Events egress-guard recorded, by reason.
func (d *demo) showEvents(ctx context.Context, namespaces []string) error {
	reasons := []string{"EgressGuardWouldPatch", "EgressGuardWouldDeny", "EgressGuardWarning"}
	var counts map[string]int
	// Events are sent in the background: give them a few seconds.
	for try := 0; try < 20; try++ {
		var err error
		if counts, err = d.eventCounts(ctx, namespaces); err != nil {
			return err
		}
		if counts[reasons[0]] > 0 && counts[reasons[1]] > 0 && counts[reasons[2]] > 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	var parts []string
	for _, reason := range reasons {
		parts = append(parts, fmt.Sprintf("%s %d", reason, counts[reason]))
	}
	d.p.blank()
	d.p.line("  Events egress-guard recorded on the objects: %s", strings.Join(parts, ", "))
	return nil
}

// eventCounts counts egress-guard's Events in namespaces by reason.
func (d *demo) eventCounts(ctx context.Context, namespaces []string) (map[string]int, error) {
	counts := map[string]int{}
	for _, ns := range namespaces {
		r := d.cp.Kubectl(ctx, nil, "get", "events", "-n", ns, "-o", "json")
		if r.Err != nil {
			return nil, fmt.Errorf("%s", errorLines(r))
		}
		var list struct {
			Items []struct {
				Reason string `json:"reason"`
				Count  int    `json:"count"`
				Source struct {
					Component string `json:"component"`
				} `json:"source"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
			return nil, err
		}
		for _, e := range list.Items {
			if e.Source.Component == "egress-guard" {
				counts[e.Reason] += max(e.Count, 1)
			}
		}
	}
	return counts, nil
}
