package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneOptions says where StartControlPlane finds what it runs.
type ControlPlaneOptions struct {
	// Assets is the directory holding kube-apiserver and etcd
	// (default: $KUBEBUILDER_ASSETS).
	Assets string
	// Kubectl names the kubectl binary (default: $KUBECTL, else kubectl on
	// the PATH).
	Kubectl string
	// Root is the repository root, where `go list -m istio.io/api` runs
	// (default: the directory holding go.mod above the working directory).
	Root string
	// CRDPaths are more CRD files or directories to install beside Istio's.
	CRDPaths []string
	// APIServerFlags are more kube-apiserver flags, name (without "--") to
	// value.
	APIServerFlags map[string]string
}

// ControlPlane is a running kube-apiserver and etcd with Istio's CRDs.
type ControlPlane struct {
	Root       string // repository root
	Dir        string // working directory (kubeconfig, kubectl cache, ...), removed by Stop
	Kubeconfig string // admin kubeconfig (group system:masters)
	KubectlBin string
	Config     *rest.Config // admin
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface

	cacheDir string // kubectl's discovery cache
	env      *envtest.Environment
}

// StartControlPlane starts kube-apiserver and etcd, installs Istio's CRDs
// and writes an admin kubeconfig. When it fails, whatever it started is
// stopped again.
func StartControlPlane(opts ControlPlaneOptions) (cp *ControlPlane, err error) {
	assets := opts.Assets
	if assets == "" {
		assets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if assets == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: it must name the directory holding kube-apiserver and etcd (run `make tools` and set KUBEBUILDER_ASSETS=$PWD/.cache/bin)")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("KUBEBUILDER_ASSETS=%s: %w (run `make tools`)", assets, err)
		}
	}
	kubectl := opts.Kubectl
	if kubectl == "" {
		kubectl = os.Getenv("KUBECTL")
	}
	if kubectl == "" {
		kubectl = "kubectl"
	}
	if kubectl, err = exec.LookPath(kubectl); err != nil {
		return nil, fmt.Errorf("kubectl not found (set KUBECTL): %w", err)
	}
	root := opts.Root
	if root == "" {
		if root, err = RepoRoot(); err != nil {
			return nil, err
		}
	}
	crds, err := IstioCRDs(root)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "egress-guard-cp-")
	if err != nil {
		return nil, err
	}

	cp = &ControlPlane{
		Root:       root,
		Dir:        dir,
		Kubeconfig: filepath.Join(dir, "kubeconfig"),
		KubectlBin: kubectl,
		cacheDir:   filepath.Join(dir, "kube-cache"),
		env: &envtest.Environment{
			BinaryAssetsDirectory: assets,
			CRDInstallOptions: envtest.CRDInstallOptions{
				Paths:              append([]string{crds}, opts.CRDPaths...),
				ErrorIfPathMissing: true,
			},
			ErrorIfCRDPathMissing: true,
		},
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
			cp = nil
		}
	}()
	apiServer := cp.env.ControlPlane.GetAPIServer()
	for name, value := range opts.APIServerFlags {
		apiServer.Configure().Set(name, value)
	}
	if _, err := cp.env.Start(); err != nil {
		return cp, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	admin, err := cp.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return cp, fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return cp, fmt.Errorf("admin kubeconfig: %w", err)
	}
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		return cp, err
	}
	cp.Config = admin.Config()
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return cp, err
	}
	if cp.Dynamic, err = dynamic.NewForConfig(cp.Config); err != nil {
		return cp, err
	}
	return cp, nil
}

// Stop stops kube-apiserver and etcd (SIGTERM, then SIGKILL after envtest's
// grace period) and removes the working directory.
func (c *ControlPlane) Stop() error {
	err := c.env.Stop()
	if err != nil {
		err = fmt.Errorf("stopping the control plane: %w", err)
	}
	return errors.Join(err, os.RemoveAll(c.Dir))
}

// APIServerURL is where kube-apiserver listens.
func (c *ControlPlane) APIServerURL() string {
	if c.Config == nil {
		return ""
	}
	return c.Config.Host
}

// EnsureNamespace creates the namespace unless it exists. created reports
// whether it was created.
func (c *ControlPlane) EnsureNamespace(ctx context.Context, name string) (created bool, err error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err = c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return true, nil
}

// RepoRoot finds the directory holding go.mod above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// IstioCRDs returns the path of Istio's CRDs in the istio.io/api module
// that the module at root requires.
func IstioCRDs(root string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m istio.io/api: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return path, nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		// Held open until all are picked, so that no port is handed out twice.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
