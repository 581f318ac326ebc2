//go:build e2e

package chart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/egress-guard/egress-guard/test/harness"
)

// env is set up once by TestMain.
var env *suite

// suite is the control plane with the CRDs the chart needs, the proxy that
// plays kube-proxy, and the tools.
type suite struct {
	*harness.ControlPlane
	chart      string // charts/egress-guard
	helm       *harness.Helm
	proxy      *harness.ServiceProxy
	cainjector string
	// certManagerController runs cert-manager's issuing controllers.
	certManagerController string
	guardBin              string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	s, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chart tests setup: %v\n", err)
		return 1
	}
	env = s
	defer func() {
		if err := s.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chart tests: %v\n", err)
		}
	}()
	return m.Run()
}

// tool returns the binary named by the environment variable, else name in
// the assets directory.
func tool(envVar, name string) (string, error) {
	bin := os.Getenv(envVar)
	if bin == "" {
		bin = filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), name)
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s: %s is not an executable file (run `make tools`, or set %s)", name, bin, envVar)
	}
	return bin, nil
}

// setup starts the proxy and the control plane. When it fails, it stops
// whatever it started.
func setup() (s *suite, err error) {
	s = &suite{}
	if s.guardBin, err = harness.CheckGuardBinary(os.Getenv("EGRESS_GUARD_BIN")); err != nil {
		return nil, fmt.Errorf("EGRESS_GUARD_BIN: %w", err)
	}
	helmBin, err := tool("HELM", "helm")
	if err != nil {
		return nil, err
	}
	if s.cainjector, err = tool("CAINJECTOR", "cainjector"); err != nil {
		return nil, err
	}
	if s.certManagerController, err = tool("CERT_MANAGER_CONTROLLER", "cert-manager-controller"); err != nil {
		return nil, err
	}
	root, err := harness.RepoRoot()
	if err != nil {
		return nil, err
	}
	s.chart = filepath.Join(root, "charts", "egress-guard")

	// A short path: Unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "eg-chart-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.stop(), os.RemoveAll(dir))
		}
	}()
	if s.proxy, err = harness.StartServiceProxy(filepath.Join(dir, "proxy.sock")); err != nil {
		return nil, err
	}
	egress := filepath.Join(dir, "egress-selector.yaml")
	if err := os.WriteFile(egress, harness.EgressSelectorConfig(s.proxy.Socket), 0o600); err != nil {
		return nil, err
	}
	certManagerCRDs, err := harness.CertManagerCRDs(root, filepath.Join(dir, "cert-manager-crds"))
	if err != nil {
		return nil, err
	}
	serviceMonitorCRD, err := harness.ServiceMonitorCRD(root)
	if err != nil {
		return nil, err
	}
	s.ControlPlane, err = harness.StartControlPlane(harness.ControlPlaneOptions{
		Root:           root,
		CRDPaths:       []string{certManagerCRDs, serviceMonitorCRD},
		APIServerFlags: map[string]string{"egress-selector-config-file": egress},
	})
	if err != nil {
		return nil, err
	}
	s.helm = &harness.Helm{Bin: helmBin, Kubeconfig: s.Kubeconfig, Dir: filepath.Join(s.Dir, "helm")}
	return s, nil
}

func (s *suite) stop() error {
	var errs []error
	if s.ControlPlane != nil {
		errs = append(errs, s.ControlPlane.Stop())
	}
	if s.proxy != nil {
		errs = append(errs, s.proxy.Close(), os.RemoveAll(filepath.Dir(s.proxy.Socket)))
	}
	return errors.Join(errs...)
}

// ensureNamespace creates the namespace, with labels, unless it exists.
func (s *suite) ensureNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	if _, err := s.EnsureNamespace(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	for k, v := range labels {
		if r := s.kubectl("label", "namespace", name, "--overwrite", k+"="+v); r.Err != nil {
			t.Fatalf("labelling namespace %s:\n%s", name, r)
		}
	}
}

func (s *suite) kubectl(args ...string) harness.Result {
	return s.Kubectl(context.Background(), nil, args...)
}

func (s *suite) helmRun(args ...string) harness.Result {
	return s.helm.Run(context.Background(), args...)
}
