package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"

	"github.com/egress-guard/egress-guard/certs"
	"github.com/egress-guard/egress-guard/webhook/server"
)

// writeKubeconfig writes a kubeconfig for a server nobody needs to reach.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// certSource parses args as serve's certificate flags and builds the source.
func certSource(t *testing.T, args ...string) (certs.Source, error) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cf := certFlags{}
	cf.bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	return cf.source(fs, logr.Discard())
}

func TestServeCertFlagErrors(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	missing := filepath.Join(t.TempDir(), "missing")
	selfManaged := []string{"--certs", "self-managed", "--kubeconfig", kubeconfig}
	complete := append(append([]string{}, selfManaged...),
		"--cert-secret", "ns/certs", "--cert-dns-names", "egress-guard.ns.svc",
		"--mutating-webhook-configuration", "m", "--validating-webhook-configuration", "v")
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--certs", "cert-manager"}, `--certs "cert-manager": must be files or self-managed`},
		{[]string{"--cert-secret", "ns/certs"}, "--cert-secret applies only to --certs self-managed"},
		{[]string{"--leader-election-id", "x"}, "--leader-election-id applies only to --certs self-managed"},
		{[]string{"--cert-validity", "1h"}, "--cert-validity applies only to --certs self-managed"},
		{with(complete, "--cert-dir", "/certs"), "--cert-dir applies only to --certs files"},
		{selfManaged, "--cert-secret is required with --certs self-managed"},
		{with(selfManaged, "--cert-secret", "certs"), `--cert-secret "certs": want NAMESPACE/NAME`},
		{with(selfManaged, "--cert-secret", "Bad_NS/certs"), `--cert-secret "Bad_NS/certs": namespace:`},
		{with(selfManaged, "--cert-secret", "ns/certs"), "--cert-dns-names is required with --certs self-managed"},
		{with(selfManaged, "--cert-secret", "ns/certs", "--cert-dns-names", "ok.example,not a name"), `--cert-dns-names: "not a name" is neither an IP address nor a DNS name`},
		{with(selfManaged, "--cert-secret", "ns/certs", "--cert-dns-names", "a.example", "--validating-webhook-configuration", "v"), "--mutating-webhook-configuration is required with --certs self-managed"},
		{with(selfManaged, "--cert-secret", "ns/certs", "--cert-dns-names", "a.example", "--mutating-webhook-configuration", "m"), "--validating-webhook-configuration is required with --certs self-managed"},
		{with(complete, "--leader-election-id", "Bad_ID"), `--leader-election-id "Bad_ID":`},
		{with(complete, "--leader-election-namespace", "a.b"), `--leader-election-namespace "a.b":`},
		{with(complete, "--cert-validity", "5s"), "--cert-validity 5s: must be at least 10s"},
		{with(complete, "--cert-validity", "2h", "--ca-validity", "1h"), "--ca-validity 1h0m0s: must be at least --cert-validity (2h0m0s)"},
		{with(complete, "--kubeconfig", missing), "--kubeconfig " + missing + ":"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := certSource(t, tc.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != ExitUsage {
				t.Fatalf("got %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestServeCertFlagSources(t *testing.T) {
	src, err := certSource(t, "--cert-dir", "/certs", "--cert-name", "c.pem", "--key-name", "k.pem")
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := src.(*certs.Files); !ok || f.String() != "files /certs/c.pem and /certs/k.pem" {
		t.Errorf("files mode: %T %v", src, src)
	}

	src, err = certSource(t, "--certs", "self-managed", "--kubeconfig", writeKubeconfig(t),
		"--cert-secret", "ns/certs", "--cert-dns-names", "egress-guard.ns.svc,127.0.0.1",
		"--mutating-webhook-configuration", "m", "--validating-webhook-configuration", "v")
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := src.(*certs.SelfManaged); !ok || s.String() != "self-managed Secret ns/certs" {
		t.Errorf("self-managed mode: %T %v", src, src)
	}
	if err := src.Healthy(); err == nil || !strings.Contains(err.Error(), "no serving certificate loaded yet from Secret ns/certs") {
		t.Errorf("self-managed before Start: Healthy() = %v", err)
	}
}

func TestServeUsageErrorExitCode(t *testing.T) {
	code, _, stderr := run(t, "", "serve", "--certs", "self-managed", "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	if code != ExitUsage || !strings.Contains(stderr, "--cert-secret is required") {
		t.Errorf("exit %d, stderr %q; want %d and the missing flag", code, stderr, ExitUsage)
	}
}

// serve reaches the API server only when something needs it.
func TestServeAPIAccess(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	auditing := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(auditing, []byte("apiVersion: egressguard.io/v1alpha1\nkind: EgressGuardConfig\naudit: {interval: 10m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)
	for _, tc := range []struct {
		args    []string
		api     bool
		leaseNS string
	}{
		{nil, false, ""},
		{[]string{"--events"}, true, ""},
		{[]string{"--kubeconfig", kubeconfig, "--leader-election-namespace", "guard"}, true, "guard"},
		{[]string{"--config", auditing}, true, ""},
		{[]string{"--certs", "self-managed", "--cert-secret", "ns/certs"}, true, "ns"},
	} {
		cmd := newServeCommand()
		if err := cmd.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		o := server.Options{}
		cf := certFlags{}
		o.Events, _ = cmd.Flags().GetBool("events")
		o.ConfigFile, _ = cmd.Flags().GetString("config")
		cf.mode, _ = cmd.Flags().GetString("certs")
		cf.secret, _ = cmd.Flags().GetString("cert-secret")
		cf.kubeconfig, _ = cmd.Flags().GetString("kubeconfig")
		cf.leNamespace, _ = cmd.Flags().GetString("leader-election-namespace")
		if err := apiAccess(cmd, &o, &cf); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if (o.REST != nil) != tc.api || o.LeaderElectionNamespace != tc.leaseNS {
			t.Errorf("%v: API access %v (lease namespace %q), want %v (%q)", tc.args, o.REST != nil, o.LeaderElectionNamespace, tc.api, tc.leaseNS)
		}
	}
}

// The request bounds are serve flags with working defaults; bounds that
// cannot work are usage errors.
func TestServeBoundsFlags(t *testing.T) {
	parse := func(args ...string) (*server.Options, error) {
		cmd := newServeCommand()
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		o := &server.Options{}
		o.EvaluationTimeout, _ = cmd.Flags().GetDuration("evaluation-timeout")
		o.MaxConcurrentRequests, _ = cmd.Flags().GetInt("max-concurrent-requests")
		o.HTTP.ReadHeader, _ = cmd.Flags().GetDuration("read-header-timeout")
		o.HTTP.Read, _ = cmd.Flags().GetDuration("read-timeout")
		o.HTTP.Write, _ = cmd.Flags().GetDuration("write-timeout")
		o.HTTP.Idle, _ = cmd.Flags().GetDuration("idle-timeout")
		return o, checkBounds(o)
	}
	o, err := parse()
	if err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	want := server.Options{EvaluationTimeout: 8 * time.Second, HTTP: server.HTTPTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 90 * time.Second}}
	if o.EvaluationTimeout != want.EvaluationTimeout || o.MaxConcurrentRequests != 0 || o.HTTP != want.HTTP {
		t.Errorf("defaults %v %d %+v", o.EvaluationTimeout, o.MaxConcurrentRequests, o.HTTP)
	}
	if o, err := parse("--evaluation-timeout=2s", "--max-concurrent-requests=7", "--read-timeout=5s", "--write-timeout=3s"); err != nil || o.EvaluationTimeout != 2*time.Second || o.MaxConcurrentRequests != 7 || o.HTTP.Read != 5*time.Second || o.HTTP.Write != 3*time.Second {
		t.Errorf("set: %+v %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--evaluation-timeout=0s"}, "--evaluation-timeout 0s: must be positive"},
		{[]string{"--max-concurrent-requests=-1"}, "--max-concurrent-requests -1: must not be negative"},
		{[]string{"--read-timeout=0s"}, "--read-timeout 0s: must be positive"},
		{[]string{"--evaluation-timeout=40s"}, "--write-timeout 30s: must exceed --evaluation-timeout 40s"},
	} {
		_, err := parse(tc.args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != ExitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
}
