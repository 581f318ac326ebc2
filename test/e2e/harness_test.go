//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

const (
	// webhookConfigName names both webhook configurations the tests register.
	webhookConfigName = "egress-guard-e2e"
	mutatingWebhook   = "mutate.egressguard.io"
	validatingWebhook = "validate.egressguard.io"

	// expectCodesAnnotation lists the rule codes a rejected object must be refused with.
	expectCodesAnnotation = "test.egressguard.io/expect-codes"

	// probeNamespace holds the object used to check which webhook URL the
	// API server calls.
	probeNamespace = "e2e-probe"

	kubectlTimeout = 60 * time.Second
	readyTimeout   = 60 * time.Second
	switchTimeout  = 60 * time.Second
)

// cluster is the control plane shared by every test.
type cluster struct {
	root       string // repository root
	config     *rest.Config
	client     kubernetes.Interface
	dynamic    dynamic.Interface
	kubeconfig string
	kubectlBin string
	cacheDir   string // kubectl's discovery cache
	certDir    string // tls.crt, tls.key and ca.crt of the webhook server
	caPEM      []byte
	guardBin   string
}

// env is set up once by TestMain.
var env *cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	c, stop, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		if stop != nil {
			stop()
		}
		return 1
	}
	env = c
	defer stop()
	return m.Run()
}

// setup starts the control plane, installs Istio's CRDs and prepares the
// webhook serving certificates and configurations. stop releases whatever was
// started, also when setup fails half way.
func setup() (c *cluster, stop func(), err error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, nil, errors.New("KUBEBUILDER_ASSETS is not set: it must name the directory holding kube-apiserver and etcd (run `make e2e`, or set KUBEBUILDER_ASSETS=$PWD/.cache/bin after `make tools`)")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, nil, fmt.Errorf("KUBEBUILDER_ASSETS=%s: %v (run `make tools`)", assets, err)
		}
	}
	guardBin := os.Getenv("EGRESS_GUARD_BIN")
	if guardBin == "" {
		return nil, nil, errors.New("EGRESS_GUARD_BIN is not set: it must name the egress-guard binary (run `make e2e`, or `make build` and set EGRESS_GUARD_BIN=$PWD/bin/egress-guard)")
	}
	if guardBin, err = filepath.Abs(guardBin); err != nil {
		return nil, nil, err
	}
	if fi, err := os.Stat(guardBin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, nil, fmt.Errorf("EGRESS_GUARD_BIN=%s is not an executable file (run `make build`)", guardBin)
	}
	kubectlBin := os.Getenv("KUBECTL")
	if kubectlBin == "" {
		kubectlBin = "kubectl"
	}
	if kubectlBin, err = exec.LookPath(kubectlBin); err != nil {
		return nil, nil, fmt.Errorf("kubectl not found (set KUBECTL): %v", err)
	}
	root, err := repoRoot()
	if err != nil {
		return nil, nil, err
	}
	crds, err := istioCRDs(root)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "egress-guard-e2e-")
	if err != nil {
		return nil, nil, err
	}

	te := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{crds},
			ErrorIfPathMissing: true,
		},
		ErrorIfCRDPathMissing: true,
	}
	started := false
	stop = func() {
		if started {
			if err := te.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: stopping the control plane: %v\n", err)
			}
		}
		_ = os.RemoveAll(tmp)
	}
	if _, err := te.Start(); err != nil {
		return nil, stop, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	started = true

	admin, err := te.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, stop, fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, stop, err
	}
	c = &cluster{
		root:       root,
		config:     admin.Config(),
		kubeconfig: filepath.Join(tmp, "kubeconfig"),
		kubectlBin: kubectlBin,
		cacheDir:   filepath.Join(tmp, "kube-cache"),
		certDir:    filepath.Join(tmp, "certs"),
		guardBin:   guardBin,
	}
	if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
		return nil, stop, err
	}
	if c.client, err = kubernetes.NewForConfig(c.config); err != nil {
		return nil, stop, err
	}
	if c.dynamic, err = dynamic.NewForConfig(c.config); err != nil {
		return nil, stop, err
	}
	if c.caPEM, err = writeServingCerts(c.certDir); err != nil {
		return nil, stop, fmt.Errorf("serving certificates: %w", err)
	}
	ctx := context.Background()
	if err := c.ensureNamespace(ctx, probeNamespace); err != nil {
		return nil, stop, err
	}
	// Register the webhooks at a URL nobody listens on, and wait until the API
	// server calls them (and fails): from then on a successful probe proves the
	// API server calls whatever URL was registered last.
	dead, err := freePorts(1)
	if err != nil {
		return nil, stop, err
	}
	if err := c.registerWebhooks(ctx, fmt.Sprintf("https://127.0.0.1:%d", dead[0])); err != nil {
		return nil, stop, err
	}
	if err := c.waitForWebhooks(ctx, false); err != nil {
		return nil, stop, err
	}
	return c, stop, nil
}

// repoRoot finds the directory holding go.mod above the working directory.
func repoRoot() (string, error) {
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

// istioCRDs returns the path of Istio's CRDs in the istio.io/api module.
func istioCRDs(root string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m istio.io/api: %v: %s", err, stderr.String())
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return path, nil
}

// writeServingCerts writes a fresh CA and a serving certificate for
// 127.0.0.1 into dir (ca.crt, tls.crt, tls.key) and returns the CA in PEM.
func writeServingCerts(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egress-guard-e2e-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.crt":  caPEM,
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Held open until all are picked, so that no port is handed out twice.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *cluster) ensureNamespace(ctx context.Context, name string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// webhookRules are the operations and resources both webhooks intercept.
func webhookRules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{"networking.istio.io"},
			APIVersions: []string{"*"},
			Resources:   []string{"serviceentries", "virtualservices", "destinationrules"},
		},
	}}
}

func webhookNamespaceSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key:      "kubernetes.io/metadata.name",
		Operator: metav1.LabelSelectorOpNotIn,
		Values:   []string{"kube-system"},
	}}}
}

// registerWebhooks creates the webhook configurations, or points the
// existing ones at base (https://host:port).
func (c *cluster) registerWebhooks(ctx context.Context, base string) error {
	mutateURL, validateURL := base+"/mutate", base+"/validate"
	matchPolicy := admissionregistrationv1.Equivalent
	sideEffects := admissionregistrationv1.SideEffectClassNone
	failurePolicy := admissionregistrationv1.Fail
	reinvocation := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(5)

	mutating := admissionregistrationv1.MutatingWebhook{
		Name:                    mutatingWebhook,
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &mutateURL, CABundle: c.caPEM},
		Rules:                   webhookRules(),
		MatchPolicy:             &matchPolicy,
		NamespaceSelector:       webhookNamespaceSelector(),
		SideEffects:             &sideEffects,
		FailurePolicy:           &failurePolicy,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
		ReinvocationPolicy:      &reinvocation,
	}
	validating := admissionregistrationv1.ValidatingWebhook{
		Name:                    validatingWebhook,
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &validateURL, CABundle: c.caPEM},
		Rules:                   webhookRules(),
		MatchPolicy:             &matchPolicy,
		NamespaceSelector:       webhookNamespaceSelector(),
		SideEffects:             &sideEffects,
		FailurePolicy:           &failurePolicy,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
	}

	mwc := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := mwc.Get(ctx, webhookConfigName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = mwc.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName},
				Webhooks:   []admissionregistrationv1.MutatingWebhook{mutating},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Webhooks = []admissionregistrationv1.MutatingWebhook{mutating}
		_, err = mwc.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("registering the mutating webhook: %w", err)
	}
	vwc := c.client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := vwc.Get(ctx, webhookConfigName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = vwc.Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName},
				Webhooks:   []admissionregistrationv1.ValidatingWebhook{validating},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Webhooks = []admissionregistrationv1.ValidatingWebhook{validating}
		_, err = vwc.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("registering the validating webhook: %w", err)
	}
	return nil
}

var destinationRules = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// probe dry-run creates an in-cluster DestinationRule, which both webhooks
// intercept, and returns the error.
func (c *cluster) probe(ctx context.Context) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "DestinationRule",
		"metadata":   map[string]any{"name": "webhook-probe", "namespace": probeNamespace},
		"spec":       map[string]any{"host": "probe." + probeNamespace + ".svc.cluster.local"},
	}}
	_, err := c.dynamic.Resource(destinationRules).Namespace(probeNamespace).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// waitForWebhooks waits until the API server's calls to the webhooks fail
// (reachable=false) or reach a server (reachable=true).
func (c *cluster) waitForWebhooks(ctx context.Context, reachable bool) error {
	deadline := time.Now().Add(switchTimeout)
	var last error
	for time.Now().Before(deadline) {
		last = c.probe(ctx)
		failed := last != nil && strings.Contains(last.Error(), "failed calling webhook")
		if failed != reachable {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if reachable {
		return fmt.Errorf("the API server did not reach the webhooks within %s; last probe: %v", switchTimeout, last)
	}
	return fmt.Errorf("the API server did not start calling the webhooks within %s; last probe: %v", switchTimeout, last)
}

// guard is a running egress-guard serve process.
type guard struct {
	cmd         *exec.Cmd
	port        int
	metricsAddr string
	healthAddr  string
	logPath     string
	done        chan struct{}
	waitErr     error
}

// URL of the webhook server.
func (g *guard) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", g.port) }

// exited reports whether the process has ended.
func (g *guard) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// logs returns the last lines of the process's output.
func (g *guard) logs(lines int) string {
	data, err := os.ReadFile(g.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", g.logPath, err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(all)-lines, g.logPath)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// startGuard starts `egress-guard serve` with config (and policies, when not
// empty), waits for /readyz, and stops the process when t ends.
func (c *cluster) startGuard(t *testing.T, config, policies string) *guard {
	t.Helper()
	ports, err := freePorts(3)
	if err != nil {
		t.Fatalf("picking free ports: %v", err)
	}
	g := &guard{
		port:        ports[0],
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		healthAddr:  fmt.Sprintf("127.0.0.1:%d", ports[2]),
		logPath:     filepath.Join(t.TempDir(), "egress-guard.log"),
		done:        make(chan struct{}),
	}
	args := []string{"serve",
		"--cert-dir", c.certDir,
		"--bind-address", "127.0.0.1",
		"--port", fmt.Sprint(g.port),
		"--config", config,
		"--metrics-bind-address", g.metricsAddr,
		"--health-probe-bind-address", g.healthAddr,
	}
	if policies != "" {
		args = append(args, "--policies", policies)
	}
	logFile, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(c.guardBin, args...)
	g.cmd.Stdout = logFile
	g.cmd.Stderr = logFile
	g.cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	// The process dies with the test binary, even when it is killed.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s %s: %v", c.guardBin, strings.Join(args, " "), err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		logFile.Close()
		close(g.done)
	}()
	t.Cleanup(func() {
		g.stop(t)
		if t.Failed() {
			t.Logf("egress-guard %s output:\n%s", strings.Join(args, " "), g.logs(200))
		}
	})

	client := c.httpsClient()
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		if g.exited() {
			t.Fatalf("egress-guard %s exited before it was ready (%v); output:\n%s", strings.Join(args, " "), g.waitErr, g.logs(200))
		}
		resp, err := client.Get(g.URL() + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("egress-guard was not ready within %s: GET %s/readyz: %s; output:\n%s", readyTimeout, g.URL(), last, g.logs(200))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return g
}

// stop ends the process: SIGTERM, then SIGKILL after a grace period.
func (g *guard) stop(t *testing.T) {
	if g.exited() {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		t.Errorf("egress-guard (pid %d) did not exit within 30s of SIGTERM; killing it", g.cmd.Process.Pid)
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// useGuard points both webhooks at g and waits until the API server calls it.
func (c *cluster) useGuard(t *testing.T, g *guard) {
	t.Helper()
	ctx := context.Background()
	if err := c.registerWebhooks(ctx, g.URL()); err != nil {
		t.Fatal(err)
	}
	if err := c.waitForWebhooks(ctx, true); err != nil {
		t.Fatalf("%v; egress-guard output:\n%s", err, g.logs(100))
	}
}

// httpsClient trusts the webhook CA.
func (c *cluster) httpsClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

// result is the outcome of one kubectl run.
type result struct {
	args   []string
	stdout string
	stderr string
	err    error
	took   time.Duration
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ kubectl %s  (%v", strings.Join(r.args, " "), r.took.Round(time.Millisecond))
	if r.err != nil {
		fmt.Fprintf(&b, ", %v", r.err)
	}
	b.WriteString(")")
	if s := strings.TrimRight(r.stdout, "\n"); s != "" {
		fmt.Fprintf(&b, "\nstdout:\n%s", indent(s))
	}
	if s := strings.TrimRight(r.stderr, "\n"); s != "" {
		fmt.Fprintf(&b, "\nstderr:\n%s", indent(s))
	}
	return b.String()
}

// output is stdout and stderr together.
func (r result) output() string { return r.stdout + r.stderr }

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// kubectl runs kubectl against the test cluster.
func (c *cluster) kubectl(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", c.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, c.kubectlBin, full...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	return result{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err, took: time.Since(start)}
}

// getObject reads back the object a document describes. found is false when
// the API server answers NotFound.
func (c *cluster) getObject(t *testing.T, d *doc) (obj map[string]any, found bool) {
	t.Helper()
	r := c.kubectl("get", "-f", d.path, "-o", "json")
	if r.err != nil {
		if isNotFound(r) {
			return nil, false
		}
		t.Fatalf("reading back %s:\n%s", d, r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil {
		t.Fatalf("reading back %s: decoding kubectl output: %v\n%s", d, err, r)
	}
	return obj, true
}

func isNotFound(r result) bool {
	return r.err != nil && (strings.Contains(r.stderr, "(NotFound)") || strings.Contains(r.stderr, "not found"))
}

// doc is one object of a scenario file.
type doc struct {
	file  string // scenario file it came from, e.g. mutate.yaml
	index int    // position in the file
	obj   *unstructured.Unstructured
	path  string // a file holding only this document, for kubectl -f
}

func (d *doc) String() string {
	return fmt.Sprintf("%s %s/%s (%s document %d)", d.obj.GetKind(), d.obj.GetNamespace(), d.obj.GetName(), d.file, d.index+1)
}

// testName is a subtest name for the document.
func (d *doc) testName() string {
	return d.obj.GetKind() + "_" + d.obj.GetNamespace() + "_" + d.obj.GetName()
}

// spec is the document's .spec in canonical JSON form.
func (d *doc) spec() any { return canonical(d.obj.Object["spec"]) }

// loadDocs reads the multi-document YAML file dir/name and writes each
// document to its own file under out. A missing file yields no documents.
func loadDocs(dir, name, out string) ([]*doc, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []*doc
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, len(docs)+1, err)
		}
		if t := strings.TrimSpace(string(js)); t == "null" || t == "" {
			continue // empty document or comments only
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, len(docs)+1, err)
		}
		d := &doc{file: name, index: len(docs), obj: obj}
		if obj.GetNamespace() == "" || obj.GetName() == "" {
			return nil, fmt.Errorf("%s: %s %q has no explicit metadata.namespace and metadata.name", name, obj.GetKind(), obj.GetName())
		}
		d.path = filepath.Join(out, fmt.Sprintf("%s-%02d-%s-%s.yaml", strings.TrimSuffix(name, ".yaml"), d.index+1, strings.ToLower(obj.GetKind()), obj.GetName()))
		if err := os.WriteFile(d.path, raw, 0o600); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// derive copies d with its namespace and name changed and writes it under out.
func derive(d *doc, out, namespace, name string) (*doc, error) {
	obj := d.obj.DeepCopy()
	obj.SetNamespace(namespace)
	obj.SetName(name)
	js, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	nd := &doc{file: d.file, index: d.index, obj: obj}
	nd.path = filepath.Join(out, fmt.Sprintf("%s-%02d-%s-%s-%s.json", strings.TrimSuffix(d.file, ".yaml"), d.index+1, strings.ToLower(obj.GetKind()), namespace, name))
	return nd, os.WriteFile(nd.path, js, 0o600)
}

// writeDoc writes obj under out as a document of its own.
func writeDoc(out, file string, obj map[string]any) (*doc, error) {
	u := &unstructured.Unstructured{Object: obj}
	js, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	d := &doc{file: file, obj: u}
	d.path = filepath.Join(out, fmt.Sprintf("%s-%s-%s.json", file, strings.ToLower(u.GetKind()), u.GetName()))
	return d, os.WriteFile(d.path, js, 0o600)
}

// expectCodes returns the codes listed in the expect-codes annotation.
func expectCodes(d *doc) []string {
	var codes []string
	for _, c := range strings.Split(d.obj.GetAnnotations()[expectCodesAnnotation], ",") {
		if c = strings.TrimSpace(c); c != "" {
			codes = append(codes, c)
		}
	}
	return codes
}

// canonical returns v as generic JSON values (maps, slices, float64, ...).
func canonical(v any) any {
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}

func prettyJSON(v any) string {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

// diffJSON lists the differences between want and got (canonical JSON), one
// line per differing field.
func diffJSON(want, got any) []string {
	var out []string
	diffAt("spec", want, got, &out)
	return out
}

func diffAt(path string, want, got any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !gok:
				*out = append(*out, fmt.Sprintf("%s.%s: missing, want %s", path, k, compact(wv)))
			case !wok:
				*out = append(*out, fmt.Sprintf("%s.%s: unexpected %s", path, k, compact(gv)))
			default:
				diffAt(path+"."+k, wv, gv, out)
			}
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		for i := range w {
			diffAt(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], out)
		}
		return
	}
	if !reflect.DeepEqual(want, got) {
		*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, compact(want), compact(got)))
	}
}

func compact(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

// checkSpec fails t when the object's spec is not want.
func checkSpec(t *testing.T, what string, want any, obj map[string]any) {
	t.Helper()
	got := canonical(obj["spec"])
	if reflect.DeepEqual(want, got) {
		return
	}
	t.Errorf("%s: .spec differs from the expected .spec:\n%s\nexpected .spec:\n%s\nactual .spec:\n%s",
		what, indent(strings.Join(diffJSON(want, got), "\n")), indent(prettyJSON(want)), indent(prettyJSON(got)))
}

// cleanup deletes the objects of the given documents, ignoring missing ones.
func (c *cluster) deleteDocs(t *testing.T, docs []*doc) {
	t.Helper()
	for _, d := range docs {
		if r := c.kubectl("delete", "-f", d.path, "--ignore-not-found", "--wait=true", "--timeout=30s"); r.err != nil {
			t.Errorf("deleting %s:\n%s", d, r)
		}
	}
}
