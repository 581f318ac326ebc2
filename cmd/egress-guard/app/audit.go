package app

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/dynamic"

	"github.com/egress-guard/egress-guard/webhook/audit"
	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

type auditOptions struct {
	files        []string
	configFile   string
	policyDirs   []string
	kubeconfig   string
	namespace    string
	writeReports bool
	reportAPI    string
	reportFiles  []string
	output       string
	workers      int
}

func newAuditCommand() *cobra.Command {
	o := &auditOptions{}
	cmd := &cobra.Command{
		Use:   "audit [-f FILE|DIR ...] [--write-reports] [--report report.html ...]",
		Short: "Report what enforcement would deny or patch in existing objects",
		Long: `audit evaluates ServiceEntries, VirtualServices and DestinationRules that
already exist, read from the cluster (kubeconfig) or from files (-f, as for
check), with the webhook's engine and configuration. Each object is mutated
with every mutation, dry runs included, then validated: the findings are what
an enforcing guard would deny or patch, each with the action it has today.

It writes OpenReports Reports to the cluster (--write-reports; one per
namespace, replacing the last audit's) and report files (--report FILE,
repeatable; the format follows the extension: .html, .md or .json).

Exit status: 0 when the audit ran (whatever it found), 2 on usage or input
errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file or directory (repeatable; - for stdin); default: read the cluster")
	f.StringVar(&o.configFile, "config", "", "EgressGuardConfig file (default: the embedded default)")
	f.StringArrayVar(&o.policyDirs, "policies", nil, "directory of platform .rego policies (repeatable)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else the in-cluster config, else ~/.kube/config)")
	f.StringVarP(&o.namespace, "namespace", "n", "", "audit one namespace of the cluster (default: all)")
	f.BoolVar(&o.writeReports, "write-reports", false, "write the reports to the cluster, one per namespace")
	f.StringVar(&o.reportAPI, "report-api", string(audit.OpenReports), "report resource written: openreports (openreports.io/v1alpha1 Report) or wgpolicyk8s (wgpolicyk8s.io/v1alpha2 PolicyReport)")
	f.StringArrayVar(&o.reportFiles, "report", nil, "write a report file: .html, .md or .json (repeatable)")
	f.StringVarP(&o.output, "output", "o", "text", "standard output: text (a summary) or json (the whole audit)")
	f.IntVar(&o.workers, "workers", 0, "objects evaluated in parallel (default: the number of CPUs)")
	return cmd
}

func (o *auditOptions) run(cmd *cobra.Command) error {
	if o.output != "text" && o.output != "json" {
		return usageError("--output %q: must be text or json", o.output)
	}
	if !slices.Contains(audit.ReportAPIs, audit.ReportAPI(o.reportAPI)) {
		return usageError("--report-api %q: must be one of %v", o.reportAPI, audit.ReportAPIs)
	}
	if len(o.files) > 0 && o.namespace != "" {
		return usageError("--namespace selects objects of the cluster; it does not apply to -f files")
	}
	formats := make([]audit.Format, len(o.reportFiles))
	for i, path := range o.reportFiles {
		var err error
		if formats[i], err = audit.FormatOf(path); err != nil {
			return usageError("--report: %v", err)
		}
	}
	cfg, err := loadConfig(o.configFile)
	if err != nil {
		return usageError("%v", err)
	}
	ctx := cmd.Context()
	var dyn dynamic.Interface
	if len(o.files) == 0 || o.writeReports {
		rc, err := restConfig(o.kubeconfig)
		if err != nil {
			return usageError("%v", err)
		}
		if dyn, err = dynamic.NewForConfig(rc); err != nil {
			return usageError("%v", err)
		}
	}
	var docs []check.Document
	if len(o.files) > 0 {
		docs, err = check.ReadPaths(o.files, cmd.InOrStdin())
	} else {
		docs, err = audit.ListObjects(ctx, dyn, cfg.AllPoliced(), o.namespace)
	}
	if err != nil {
		return usageError("%v", err)
	}
	var inv engine.Inventory
	if len(o.files) > 0 {
		inv, err = audit.Inventory(docs, cfg)
	} else {
		inv, err = audit.ClusterInventory(ctx, dyn, docs, cfg)
	}
	if err != nil {
		return usageError("%v", err)
	}
	e, err := engine.New(ctx, engine.Options{Config: cfg, PolicyDirs: o.policyDirs, Inventory: inv})
	if err != nil {
		return usageError("%v", err)
	}
	if os.Getenv("GOGC") == "" {
		// Much garbage per object, a small live heap: as serve does.
		debug.SetGCPercent(400)
	}
	opts := audit.Options{Workers: o.workers, Strict: len(o.files) > 0}
	if o.output == "text" {
		opts.Progress = progress(cmd.ErrOrStderr())
	}
	a, err := audit.Run(ctx, e, docs, opts)
	if err != nil {
		return usageError("%v", err)
	}
	if o.writeReports {
		// Reports of namespaces without objects left are pruned only after
		// reading the cluster: files are no inventory of it.
		prune := audit.Prune{Enabled: len(o.files) == 0, Scope: o.namespace}
		if err := audit.WriteReports(ctx, dyn, audit.ReportAPI(o.reportAPI), audit.Reports(a), prune); err != nil {
			return err
		}
	}
	for i, path := range o.reportFiles {
		if err := writeReportFile(path, formats[i], a); err != nil {
			return err
		}
	}
	if o.output == "json" {
		return audit.Write(cmd.OutOrStdout(), audit.FormatJSON, a)
	}
	writeAuditSummary(cmd.OutOrStdout(), a, o)
	return nil
}

func writeReportFile(path string, format audit.Format, a *audit.Audit) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := audit.Write(f, format, a); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// progress shows objects audited / total on a terminal, at most 100 times,
// and nothing elsewhere.
func progress(w io.Writer) func(done, total int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(done, total int) {
		if done == total || done%max(1, total/100) == 0 {
			fmt.Fprintf(w, "\raudited %d/%d objects", done, total)
		}
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

func writeAuditSummary(w io.Writer, a *audit.Audit, o *auditOptions) {
	s := audit.Summarize(a)
	fmt.Fprintf(w, "%d objects: %d compliant, %d that enforcement would deny or change, %d that could not be evaluated, %d skipped\n", s.Objects, s.Compliant, s.WithFindings, s.Errors, s.Skipped)
	for _, ns := range s.Namespaces {
		fmt.Fprintf(w, "  %s: %d objects, %d with findings", ns.Namespace, ns.Objects, ns.WithFindings)
		for _, rc := range ns.Rules {
			fmt.Fprintf(w, "; %s %d fail %d warn", rc.Code, rc.Fail, rc.Warn)
		}
		fmt.Fprintln(w)
	}
	for _, r := range a.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "error %s %s/%s: %s\n", r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Error)
		}
		for _, f := range r.Findings {
			fmt.Fprintf(w, "%-4s %s %s %s/%s (%s): %s\n", f.Outcome, f.Code, r.Object.Kind, r.Object.Namespace, r.Object.Name, f.Action, f.Message)
		}
	}
	if o.writeReports {
		fmt.Fprintf(w, "wrote %d %s reports\n", len(s.Namespaces), o.reportAPI)
	}
	for _, path := range o.reportFiles {
		fmt.Fprintf(w, "wrote %s\n", path)
	}
}
