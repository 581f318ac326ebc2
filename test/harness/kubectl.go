package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// KubectlTimeout bounds one kubectl run.
const KubectlTimeout = 60 * time.Second

// Result is the outcome of one kubectl (or helm) run.
type Result struct {
	Cmd    string   // the command's name; empty means kubectl
	Args   []string // after the kubeconfig and cache flags
	Stdout string
	Stderr string
	Err    error // nil when kubectl exited 0
	Took   time.Duration
}

// Kubectl runs kubectl against the control plane as its admin, with stdin
// as standard input when it is not nil.
func (c *ControlPlane) Kubectl(ctx context.Context, stdin []byte, args ...string) Result {
	ctx, cancel := context.WithTimeout(ctx, KubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", c.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, c.KubectlBin, full...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return runCommand(ctx, cmd, args)
}

// runCommand runs cmd, whose context is ctx, and returns its output and how
// it ended; args are the arguments to show.
func runCommand(ctx context.Context, cmd *exec.Cmd, args []string) Result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Err: err, Took: time.Since(start)}
}

// String shows the command, how it ended and its output.
func (r Result) String() string {
	var b strings.Builder
	name := r.Cmd
	if name == "" {
		name = "kubectl"
	}
	fmt.Fprintf(&b, "$ %s %s  (%v", name, strings.Join(r.Args, " "), r.Took.Round(time.Millisecond))
	if r.Err != nil {
		fmt.Fprintf(&b, ", %v", r.Err)
	}
	b.WriteString(")")
	if s := strings.TrimRight(r.Stdout, "\n"); s != "" {
		fmt.Fprintf(&b, "\nstdout:\n%s", Indent(s, "    "))
	}
	if s := strings.TrimRight(r.Stderr, "\n"); s != "" {
		fmt.Fprintf(&b, "\nstderr:\n%s", Indent(s, "    "))
	}
	return b.String()
}

// Output is stdout and stderr together.
func (r Result) Output() string { return r.Stdout + r.Stderr }

// NotFound reports whether kubectl failed because the object does not exist.
func (r Result) NotFound() bool {
	return r.Err != nil && (strings.Contains(r.Stderr, "(NotFound)") || strings.Contains(r.Stderr, "not found"))
}

// Warnings are the "Warning: ..." lines kubectl printed on stderr, without
// the prefix.
func (r Result) Warnings() []string {
	var out []string
	for _, line := range strings.Split(r.Stderr, "\n") {
		if w, ok := strings.CutPrefix(line, "Warning: "); ok {
			out = append(out, w)
		}
	}
	return out
}

// Indent puts prefix before every line of s.
func Indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
