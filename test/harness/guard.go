package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// GuardReadyTimeout bounds how long StartGuard waits for /readyz.
	GuardReadyTimeout = 60 * time.Second
	// guardStopTimeout is the grace period between SIGTERM and SIGKILL.
	guardStopTimeout = 30 * time.Second
)

// GuardOptions describe an `egress-guard serve` process.
type GuardOptions struct {
	Bin string // the egress-guard binary
	// Certs are the serving certificates (--cert-dir), trusted by the
	// readiness check. Without them no --cert-dir is passed (Args choose the
	// certificates) and readiness is checked on the plain-HTTP health port.
	Certs      *Certs
	Config     string   // --config
	Policies   string   // --policies, when not empty
	Kubeconfig string   // KUBECONFIG of the process, when not empty
	LogPath    string   // stdout and stderr of the process
	Port       int      // webhook server port (default: a free one)
	Args       []string // more arguments, after the others
	// CommandLine, when set, gives the command line after the binary
	// instead of the one StartGuard builds from the fields above. It is
	// called with the Guard's Port, MetricsAddr and HealthAddr chosen, and
	// must make the webhook server listen on 127.0.0.1:Port.
	CommandLine func(g *Guard) []string
}

// Guard is a running `egress-guard serve` process.
type Guard struct {
	Args        []string // the command line after the binary
	Port        int      // webhook server port on 127.0.0.1
	MetricsAddr string
	HealthAddr  string
	LogPath     string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// CheckGuardBinary returns bin as an absolute path, or an error when it is
// not an executable file.
func CheckGuardBinary(bin string) (string, error) {
	if bin == "" {
		return "", errors.New("no egress-guard binary given (run `make build`; it writes bin/egress-guard)")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file (run `make build`)", abs)
	}
	return abs, nil
}

// StartGuard starts `egress-guard serve` on free ports of 127.0.0.1 and
// waits until its /readyz answers 200 over TLS. When the process does not
// get ready it is stopped, and the error carries the end of its output.
func StartGuard(ctx context.Context, opts GuardOptions) (*Guard, error) {
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	if opts.Port != 0 {
		ports[0] = opts.Port
	}
	g := &Guard{
		Port:        ports[0],
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		HealthAddr:  fmt.Sprintf("127.0.0.1:%d", ports[2]),
		LogPath:     opts.LogPath,
		done:        make(chan struct{}),
	}
	g.Args = []string{"serve"}
	if opts.Certs != nil {
		g.Args = append(g.Args, "--cert-dir", opts.Certs.Dir)
	}
	g.Args = append(g.Args,
		"--bind-address", "127.0.0.1",
		"--port", fmt.Sprint(g.Port),
		"--config", opts.Config,
		"--metrics-bind-address", g.MetricsAddr,
		"--health-probe-bind-address", g.HealthAddr,
	)
	if opts.Policies != "" {
		g.Args = append(g.Args, "--policies", opts.Policies)
	}
	g.Args = append(g.Args, opts.Args...)
	if opts.CommandLine != nil {
		g.Args = opts.CommandLine(g)
	}
	logFile, err := os.Create(opts.LogPath)
	if err != nil {
		return nil, fmt.Errorf("egress-guard log: %w", err)
	}
	g.cmd = exec.Command(opts.Bin, g.Args...)
	g.cmd.Stdout = logFile
	g.cmd.Stderr = logFile
	g.cmd.Env = os.Environ()
	if opts.Kubeconfig != "" {
		g.cmd.Env = append(g.cmd.Env, "KUBECONFIG="+opts.Kubeconfig)
	}
	// The process dies with its parent, even when the parent is killed.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", g, err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		logFile.Close()
		close(g.done)
	}()
	client, readyz := &http.Client{Timeout: 5 * time.Second}, "http://"+g.HealthAddr+"/readyz"
	if opts.Certs != nil {
		client, readyz = opts.Certs.HTTPClient(), g.URL()+"/readyz"
	}
	if err := g.waitReady(ctx, client, readyz); err != nil {
		return nil, errors.Join(err, g.Stop())
	}
	return g, nil
}

func (g *Guard) waitReady(ctx context.Context, client *http.Client, readyz string) error {
	ctx, cancel := context.WithTimeout(ctx, GuardReadyTimeout)
	defer cancel()
	var last string
	for {
		if g.Exited() {
			return fmt.Errorf("%s exited before it was ready (%v); output:\n%s", g, g.waitErr, g.Logs(200))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready (%w): GET %s: %s; output:\n%s", g, ctx.Err(), readyz, last, g.Logs(200))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// String is the command line.
func (g *Guard) String() string { return "egress-guard " + strings.Join(g.Args, " ") }

// URL of the webhook server.
func (g *Guard) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", g.Port) }

// Pid is the process id.
func (g *Guard) Pid() int { return g.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (g *Guard) Exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Logs returns the last lines of the process's output.
func (g *Guard) Logs(lines int) string {
	data, err := os.ReadFile(g.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", g.LogPath, err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(all)-lines, g.LogPath)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// Stop ends the process: SIGTERM, then SIGKILL after a grace period. It
// returns an error only when the process had to be killed.
func (g *Guard) Stop() error {
	if g.Exited() {
		return nil
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		return nil
	case <-time.After(guardStopTimeout):
		_ = g.cmd.Process.Kill()
		<-g.done
		return fmt.Errorf("egress-guard (pid %d) did not exit within %s of SIGTERM; killed it", g.Pid(), guardStopTimeout)
	}
}
