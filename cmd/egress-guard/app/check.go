package app

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egress-guard/egress-guard/webhook/check"
	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

type checkOptions struct {
	files      []string
	configFile string
	policyDirs []string
	output     string
}

func newCheckCommand() *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check -f FILE|DIR [-f ...]",
		Short: "Mutate then validate manifests offline, with the webhook's engine",
		Long: `check runs the webhook's engine over multi-document YAML manifests: each
object is mutated, then validated, as the API server calls the two webhooks.
The files given are the whole world: ServiceEntries among them count as
registered hosts.

Exit status: 0 when every object is allowed, 1 when any is denied, 2 on usage
or input errors, or when an object could not be evaluated (an internal error,
reported on that object's line; the other objects are checked on).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	cmd.Flags().StringArrayVarP(&o.files, "filename", "f", nil, "manifest file or directory (repeatable; - for stdin)")
	cmd.Flags().StringVar(&o.configFile, "config", "", "EgressGuardConfig file (default: the embedded default)")
	cmd.Flags().StringArrayVar(&o.policyDirs, "policies", nil, "directory of platform .rego policies (repeatable)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (o *checkOptions) run(cmd *cobra.Command) (err error) {
	// The work on each object contains its own panics; anything else is
	// still an error message, never a stack trace.
	defer func() {
		if v := recover(); v != nil {
			err = usageError("internal error: %v", v)
		}
	}()
	if len(o.files) == 0 {
		return usageError("check needs at least one -f FILE|DIR")
	}
	if o.output != "text" && o.output != "json" {
		return usageError("--output %q: must be text or json", o.output)
	}
	cfg, err := loadConfig(o.configFile)
	if err != nil {
		return usageError("%v", err)
	}
	docs, err := check.ReadPaths(o.files, cmd.InOrStdin())
	if err != nil {
		return usageError("%v", err)
	}
	inv, err := check.Inventory(docs, cfg)
	if err != nil {
		return usageError("%v", err)
	}
	e, err := engine.New(cmd.Context(), engine.Options{Config: cfg, PolicyDirs: o.policyDirs, Inventory: inv})
	if err != nil {
		return usageError("%v", err)
	}
	rep, err := check.Run(cmd.Context(), e, docs)
	if err != nil {
		return usageError("%v", err)
	}
	if o.output == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := writeText(cmd.OutOrStdout(), rep); err != nil {
		return err
	}
	if n := rep.Errors(); n > 0 {
		return usageError("%d of %d objects could not be evaluated", n, len(rep.Results))
	}
	if rep.Denied() {
		return &exitError{code: ExitDenied, err: fmt.Errorf("denied")}
	}
	return nil
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.LoadFile(path)
}

// writeText prints one line per object, then its violations, warnings and
// the change as a unified diff of the YAML.
func writeText(w io.Writer, rep *check.Report) error {
	var allowed, denied, mutated, errored int
	for _, r := range rep.Results {
		status := "allowed"
		switch {
		case r.Error != "":
			status, errored = "ERROR", errored+1
		case !r.Allowed:
			status, denied = "DENIED", denied+1
		case r.Mutated:
			status, mutated, allowed = "mutated", mutated+1, allowed+1
		default:
			allowed++
		}
		line := fmt.Sprintf("%-8s %s %s/%s", status, r.Kind, r.Namespace, r.Name)
		if r.Skipped != "" {
			line += " (" + r.Skipped + ")"
		}
		fmt.Fprintf(w, "%s  [%s]\n", line, r.Source)
		if r.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", r.Error)
		}
		for _, v := range r.Violations {
			fmt.Fprintf(w, "    %s %-6s %s\n", v.Code, v.Action, v.Message)
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "    warning: %s\n", warn)
		}
		if len(r.Patch) > 0 {
			diff, err := yamlDiff(r.Original, r.Object, "mutated")
			if err != nil {
				return err
			}
			fmt.Fprint(w, indent(diff, "    "))
		}
		if len(r.DryRunPatch) > 0 {
			diff, err := yamlDiff(r.Object, r.WouldBe, "would be mutated (dry run)")
			if err != nil {
				return err
			}
			fmt.Fprint(w, indent(diff, "    "))
		}
	}
	summary := fmt.Sprintf("%d objects: %d allowed (%d mutated), %d denied", len(rep.Results), allowed, mutated, denied)
	if errored > 0 {
		summary += fmt.Sprintf(", %d could not be evaluated", errored)
	}
	fmt.Fprintln(w, summary)
	return nil
}

// yamlDiff is the unified diff of two JSON documents shown as YAML.
func yamlDiff(before, after []byte, title string) (string, error) {
	return check.YAMLDiff(before, after, "submitted", title)
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}
