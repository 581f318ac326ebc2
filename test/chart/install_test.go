//go:build e2e

package chart

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/egress-guard/egress-guard/test/harness"
)

const (
	release          = "eg"
	releaseNamespace = "egress-guard"
	// optedOutNamespace carries the chart's default opt-out label.
	optedOutNamespace = "opted-out"
	// meshNamespace is in the mesh (istio-injection=enabled): its Pods go
	// to the workload webhooks.
	meshNamespace = "mesh-injection"
	// scenario is the scenario whose configuration the install carries, and
	// whose objects are applied through the chart's webhooks.
	scenario = "000-http-mtls-origination"
	// waitTimeout bounds each wait for the cluster to settle.
	waitTimeout = 60 * time.Second
)

// TestCertManagerInstall installs the chart as docs/install.md says, in
// cert-manager mode, and follows one release through its life: the
// certificates are issued, cert-manager's CA injector writes the CA into the
// webhook configurations, the API server calls egress-guard through the
// chart's Service over verified TLS, the failure policy holds with the
// webhook stopped, helm upgrade keeps the injected CA, helm uninstall removes
// the webhooks.
//
// cert-manager runs as two processes built from its module
// (test/tools/cert-manager): its issuing controllers (Issuers, the
// CertificateRequest approver and SelfSigned and CA signers, the Certificate
// controllers) and its CA injector.
func TestCertManagerInstall(t *testing.T) {
	ctx := context.Background()
	s, err := harness.LoadScenario(filepath.Join(mustRoot(t), "test", "scenarios", scenario), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env.ensureNamespace(t, releaseNamespace, nil)
	env.ensureNamespace(t, optedOutNamespace, map[string]string{"egressguard.io/ignore": "true"})
	env.ensureNamespace(t, meshNamespace, map[string]string{"istio-injection": "enabled"})
	for _, ns := range s.Namespaces() {
		env.ensureNamespace(t, ns, nil)
	}

	// The report CRDs are the self-managed test's: a CRD kept by one release
	// (helm.sh/resource-policy: keep) cannot be installed by another.
	inst := install(t, s, release, releaseNamespace,
		[]string{"Enforcement: deny", "Failure policy: Fail", "Certificates: cert-manager", "Events: on"},
		"--set", "reports.crds.openreports=false")
	startCertManagerController(t)
	caPEM := inst.waitCertificates(t)

	g := inst.startGuard(t, caPEM)
	inst.route(t, g)

	t.Run("unverified-tls-refused", func(t *testing.T) {
		// Nothing has written the CA into the webhook configurations yet: the
		// API server reaches egress-guard but cannot verify its certificate.
		r := applyServiceEntry(t, "default", "before-injection")
		if r.Err == nil || !strings.Contains(r.Output(), "failed calling webhook") || !strings.Contains(r.Output(), "x509") {
			t.Fatalf("without a caBundle the write must fail certificate verification:\n%s", r)
		}
		t.Logf("%s", r)
	})

	injector := startCAInjector(t)
	t.Run("ca-injected", func(t *testing.T) {
		inst.waitCABundle(t, caPEM, injector)
	})
	if t.Failed() {
		t.FailNow()
	}
	waitWebhooksReached(t, g)

	deleteScenarioAtEnd(t, s)
	t.Run("scenario", func(t *testing.T) { applyScenario(t, s) })
	t.Run("audit-lease", func(t *testing.T) {
		// Events give serve API access, so it runs the audit's leader
		// election (idle: no audit.interval) with the chart's Role.
		inst.waitLeases(t, "audit-leader-election-id")
	})
	t.Run("never-policed", func(t *testing.T) {
		for _, ns := range []string{"kube-system", releaseNamespace, optedOutNamespace} {
			if r := applyServiceEntry(t, ns, "never-policed"); r.Err != nil {
				t.Errorf("a ServiceEntry the guard rejects must be admitted in %s, which the webhooks never see:\n%s", ns, r)
			}
		}
		r := applyServiceEntry(t, "default", "policed")
		if r.Err == nil || !strings.Contains(r.Output(), "EGR101") {
			t.Errorf("in default the ServiceEntry must be rejected with EGR101:\n%s", r)
		}
		t.Logf("%s", r)
	})
	t.Run("workloads", func(t *testing.T) {
		// A Pod on the node's network: judged in the mesh's namespaces
		// alone, through a workload webhook.
		r := applyPod(t, meshNamespace, "host-network")
		if r.Err == nil || !strings.Contains(r.Output(), "EGR509") {
			t.Errorf("in %s (istio-injection=enabled) a hostNetwork Pod must be rejected with EGR509:\n%s", meshNamespace, r)
		}
		t.Logf("%s", r)
		for _, ns := range []string{"default", optedOutNamespace} {
			if r := applyPod(t, ns, "host-network"); r.Err != nil {
				t.Errorf("in %s, outside the mesh, Pods must not be sent to the webhooks:\n%s", ns, r)
			}
		}
	})

	if err := g.Stop(); err != nil {
		t.Error(err)
	}
	env.proxy.Unroute(inst.serviceAddr)

	t.Run("failurePolicy=Fail", func(t *testing.T) {
		r := applyServiceEntry(t, "default", "guard-stopped")
		if r.Err == nil || !strings.Contains(r.Output(), "failed calling webhook") {
			t.Errorf("with the webhook stopped and failurePolicy Fail, the write must be refused:\n%s", r)
		}
		t.Logf("%s", r)
		for _, ns := range []string{"kube-system", releaseNamespace, optedOutNamespace} {
			if r := applyServiceEntry(t, ns, "guard-stopped"); r.Err != nil {
				t.Errorf("with the webhook stopped, writes in %s must still succeed:\n%s", ns, r)
			}
		}
		// webhook.workloadsFailurePolicy Fail: Pods are refused in the
		// mesh's namespaces, as Istio's sidecar injector refuses them, and
		// nowhere else.
		r = applyPod(t, meshNamespace, "guard-stopped")
		if r.Err == nil || !strings.Contains(r.Output(), "failed calling webhook") || !strings.Contains(r.Output(), "workloads.egressguard.io") {
			t.Errorf("with the webhook stopped and workloadsFailurePolicy Fail, a Pod in %s must be refused by workloads.egressguard.io:\n%s", meshNamespace, r)
		}
		t.Logf("%s", r)
		for _, ns := range []string{"default", "kube-system", releaseNamespace, optedOutNamespace} {
			if r := applyPod(t, ns, "guard-stopped"); r.Err != nil {
				t.Errorf("with the webhook stopped, Pods in %s (outside the mesh or never policed) must be admitted:\n%s", ns, r)
			}
		}
	})

	t.Run("upgrade-to-failurePolicy=Ignore", func(t *testing.T) {
		r := env.helmRun("upgrade", release, env.chart, "--namespace", releaseNamespace, "--reuse-values", "--set", "webhook.failurePolicy=Ignore")
		if r.Err != nil {
			t.Fatalf("helm upgrade failed:\n%s", r)
		}
		for _, w := range inst.webhookConfigurations(t) {
			// The workload webhooks keep webhook.workloadsFailurePolicy.
			want := admissionregistrationv1.Ignore
			if w.workload {
				want = admissionregistrationv1.Fail
			}
			if w.failurePolicy != want {
				t.Errorf("%s: failurePolicy %s after the upgrade, want %s", w.name, w.failurePolicy, want)
			}
			if !bytes.Equal(w.caBundle, caPEM) {
				t.Errorf("%s: the injected caBundle did not survive helm upgrade", w.name)
			}
		}
		var last harness.Result
		admitted := eventually(func() bool {
			last = applyServiceEntry(t, "default", "guard-stopped")
			return last.Err == nil
		})
		if !admitted {
			t.Errorf("with the webhook stopped and failurePolicy Ignore, the write must be admitted:\n%s", last)
		}
		if r := applyPod(t, meshNamespace, "guard-stopped"); r.Err == nil || !strings.Contains(r.Output(), "failed calling webhook") {
			t.Errorf("with the webhook stopped and workloadsFailurePolicy still Fail, a Pod in %s must be refused:\n%s", meshNamespace, r)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		r := env.helmRun("uninstall", release, "--namespace", releaseNamespace, "--wait")
		if r.Err != nil {
			t.Fatalf("helm uninstall failed:\n%s", r)
		}
		api := env.Client.AdmissionregistrationV1()
		_, errM := api.MutatingWebhookConfigurations().Get(ctx, inst.webhookConfigName, metav1.GetOptions{})
		_, errV := api.ValidatingWebhookConfigurations().Get(ctx, inst.webhookConfigName, metav1.GetOptions{})
		if !apierrors.IsNotFound(errM) || !apierrors.IsNotFound(errV) {
			t.Errorf("after helm uninstall the webhook configurations remain (%v, %v)", errM, errV)
		}
	})
}

func mustRoot(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// installation is the release as the API server stores it.
type installation struct {
	release, namespace string
	objs               harness.Objects // from helm get manifest
	deployment         *appsv1.Deployment
	service            *corev1.Service // read back, with its ClusterIP
	serviceAddr        string          // ClusterIP:port
	webhookConfigName  string
	serverName         string // what the API server verifies: <service>.<namespace>.svc
}

// install runs helm install of release in namespace with the scenario's
// configuration and a platform policy as values, then args, checks that
// the notes say each of notes, and reads the release back.
func install(t *testing.T, s *harness.Scenario, release, namespace string, notes []string, args ...string) *installation {
	t.Helper()
	values := installValues(t, s)
	r := env.helmRun(append([]string{"install", release, env.chart, "--namespace", namespace, "-f", values}, args...)...)
	if r.Err != nil {
		t.Fatalf("helm install failed:\n%s", r)
	}
	t.Cleanup(func() {
		env.helmRun("uninstall", release, "--namespace", namespace, "--ignore-not-found")
	})
	for _, note := range notes {
		if !strings.Contains(r.Stdout, note) {
			t.Errorf("helm install's notes lack %q:\n%s", note, r)
		}
	}
	m := env.helmRun("get", "manifest", release, "--namespace", namespace)
	if m.Err != nil {
		t.Fatalf("helm get manifest failed:\n%s", m)
	}
	objs, err := harness.ParseObjects([]byte(m.Stdout))
	if err != nil {
		t.Fatal(err)
	}
	inst := &installation{release: release, namespace: namespace, objs: objs}
	rendered := rendered{objs: objs, namespace: namespace}
	inst.deployment, _ = rendered.deployment(t)
	svc := rendered.service(t)
	if inst.service, err = env.Client.CoreV1().Services(namespace).Get(context.Background(), svc.Name, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	inst.serviceAddr = net.JoinHostPort(inst.service.Spec.ClusterIP, strconv.Itoa(int(inst.service.Spec.Ports[0].Port)))
	inst.serverName = inst.service.Name + "." + namespace + ".svc"
	inst.webhookConfigName = objs.Kind("ValidatingWebhookConfiguration")[0].GetName()
	return inst
}

// installValues writes a values file holding the scenario's configuration
// and the platform policy.
func installValues(t *testing.T, s *harness.Scenario) string {
	t.Helper()
	data, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	delete(cfg, "apiVersion")
	delete(cfg, "kind")
	values, err := yaml.Marshal(map[string]any{
		"config":   cfg,
		"policies": map[string]string{"platform.rego": platformPolicy},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, values, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitCertificates waits until cert-manager has issued the chart's
// certificates: the serving Certificate the webhook configurations name,
// signed by the CA of the chart's CA Issuer, for the name the API server
// verifies. It returns the CA.
func (inst *installation) waitCertificates(t *testing.T) (caPEM []byte) {
	t.Helper()
	ctx := context.Background()
	ref := inst.objs.Kind("MutatingWebhookConfiguration")[0].GetAnnotations()[harness.InjectCAFromAnnotation]
	_, servingName, _ := strings.Cut(ref, "/")
	servingCert := inst.objs.Get("Certificate", servingName)
	if servingCert == nil {
		t.Fatalf("%s=%q names no Certificate of the release", harness.InjectCAFromAnnotation, ref)
	}
	issuerName, _, _ := unstructured.NestedString(servingCert.Object, "spec", "issuerRef", "name")
	issuer := inst.objs.Get("Issuer", issuerName)
	if issuer == nil {
		t.Fatalf("Certificate %s: Issuer %s is not in the release", servingName, issuerName)
	}
	caSecretName, _, _ := unstructured.NestedString(issuer.Object, "spec", "ca", "secretName")

	serving, err := env.WaitCertificate(ctx, inst.namespace, servingName, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if got := serving.Annotations["cert-manager.io/certificate-name"]; got != servingName {
		t.Errorf("Secret %s: cert-manager.io/certificate-name %q, want %q (cainjector reads only a Secret its Certificate owns)", serving.Name, got, servingName)
	}
	caSecret, err := env.Client.CoreV1().Secrets(inst.namespace).Get(ctx, caSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the CA Issuer's Secret: %v", err)
	}
	caPEM = caSecret.Data[corev1.TLSCertKey]
	if !bytes.Equal(serving.Data["ca.crt"], caPEM) {
		t.Fatalf("the serving Secret's ca.crt is not the certificate of the CA Issuer's Secret %s", caSecretName)
	}
	leaf, err := harness.ParseCertificatePEM(serving.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: inst.serverName, Roots: pool}); err != nil {
		t.Fatalf("the serving certificate does not verify for %s against the CA: %v", inst.serverName, err)
	}
	return caPEM
}

// startGuard runs egress-guard as the Deployment's container would: its
// arguments, with each mounted volume's content (read back from the API
// server) in a local directory. The pod's ports become free ports on
// 127.0.0.1. With a certificate directory (cert-manager mode) readiness is
// checked over TLS against caPEM; without (self-managed) on the health
// port. When the pod mounts its ServiceAccount token, serve
// reaches the API server as that ServiceAccount, with a token from the
// TokenRequest API as the kubelet would mount it: the chart's RBAC is all it
// has. A call the RBAC refuses fails the test.
func (inst *installation) startGuard(t *testing.T, caPEM []byte) *harness.Guard {
	t.Helper()
	mounts := inst.mountVolumes(t)
	pod := inst.deployment.Spec.Template.Spec
	c := pod.Containers[0]
	opts := harness.GuardOptions{
		Bin:         env.guardBin,
		LogPath:     filepath.Join(t.TempDir(), "egress-guard.log"),
		CommandLine: func(g *harness.Guard) []string { return podArgs(t, c.Args, mounts, g) },
	}
	if certDir, ok := flag(c.Args, "cert-dir"); ok {
		opts.Certs = &harness.Certs{Dir: localPath(t, mounts, certDir), CAPEM: caPEM, ServerName: inst.serverName}
	}
	if pod.AutomountServiceAccountToken != nil && *pod.AutomountServiceAccountToken {
		opts.Kubeconfig = inst.serviceAccountKubeconfig(t, pod.ServiceAccountName)
	}
	g, err := harness.StartGuard(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("egress-guard %s", strings.Join(g.Args, " "))
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Error(err)
		}
		if denied := forbidden(g); len(denied) > 0 {
			t.Errorf("the chart's RBAC refused egress-guard %d calls:\n%s", len(denied), strings.Join(denied, "\n"))
		}
		if t.Failed() {
			t.Logf("egress-guard output:\n%s", g.Logs(100))
		}
	})
	return g
}

// forbidden returns the lines of the guard's output where the API server
// refused a call of its ServiceAccount.
func forbidden(g *harness.Guard) []string {
	var out []string
	for _, line := range strings.Split(g.Logs(100000), "\n") {
		if strings.Contains(line, `is forbidden: User \"system:serviceaccount:`) || strings.Contains(line, `is forbidden: User "system:serviceaccount:`) {
			out = append(out, line)
		}
	}
	return out
}

// serviceAccountKubeconfig writes a kubeconfig that reaches the API server
// as the ServiceAccount, with a token from the TokenRequest API.
func (inst *installation) serviceAccountKubeconfig(t *testing.T, serviceAccount string) string {
	t.Helper()
	tr, err := env.Client.CoreV1().ServiceAccounts(inst.namespace).CreateToken(context.Background(), serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for ServiceAccount %s/%s: %v", inst.namespace, serviceAccount, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["control-plane"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	kc.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["pod"] = &clientcmdapi.Context{Cluster: "control-plane", AuthInfo: serviceAccount, Namespace: inst.namespace}
	kc.CurrentContext = "pod"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitLeases waits until the Leases the container's flags name (by flag
// name) exist in the release namespace with a holder.
func (inst *installation) waitLeases(t *testing.T, flags ...string) {
	t.Helper()
	for _, f := range flags {
		name, ok := flag(inst.deployment.Spec.Template.Spec.Containers[0].Args, f)
		if !ok {
			t.Fatalf("the Deployment passes no --%s", f)
		}
		var last error
		if !eventually(func() bool {
			l, err := env.Client.CoordinationV1().Leases(inst.namespace).Get(context.Background(), name, metav1.GetOptions{})
			last = err
			return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != ""
		}) {
			t.Errorf("Lease %s/%s (--%s) has no holder (%v)", inst.namespace, name, f, last)
		}
	}
}

// mountVolumes writes the content of the Deployment's ConfigMap and Secret
// volumes, as stored in the API server, into local directories, and returns
// mount path -> directory.
func (inst *installation) mountVolumes(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	pod := inst.deployment.Spec.Template.Spec
	mounts := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		dir := t.TempDir()
		mounts[m.MountPath] = dir
		var files map[string][]byte
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.ConfigMap != nil:
				cm, err := env.Client.CoreV1().ConfigMaps(inst.namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("volume %s: %v", v.Name, err)
				}
				files = map[string][]byte{}
				for k, s := range cm.Data {
					files[k] = []byte(s)
				}
			case v.Secret != nil:
				secret, err := env.Client.CoreV1().Secrets(inst.namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("volume %s: %v", v.Name, err)
				}
				files = secret.Data
			case v.EmptyDir != nil:
			default:
				t.Fatalf("volume %s: a kind of volume the test does not mount", v.Name)
			}
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return mounts
}

// localPath maps a path in the container to the local directory of its
// mount, or fails t.
func localPath(t *testing.T, mounts map[string]string, p string) string {
	t.Helper()
	for mountPath, dir := range mounts {
		if rest, ok := strings.CutPrefix(p, mountPath); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
			return dir + rest
		}
	}
	t.Fatalf("%s is not under any volume mount of the container (%v)", p, mounts)
	return ""
}

// podArgs turns the container's arguments into a local command line: paths
// under volume mounts point at their local directories, the listeners at
// the Guard's loopback ports.
func podArgs(t *testing.T, args []string, mounts map[string]string, g *harness.Guard) []string {
	out := make([]string, 0, len(args)+1)
	for _, a := range args {
		name, value, isFlag := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !strings.HasPrefix(a, "--") || !isFlag:
			out = append(out, a)
		case name == "port":
			out = append(out, "--port="+strconv.Itoa(g.Port), "--bind-address=127.0.0.1")
		case name == "metrics-bind-address":
			out = append(out, "--metrics-bind-address="+g.MetricsAddr)
		case name == "health-probe-bind-address":
			out = append(out, "--health-probe-bind-address="+g.HealthAddr)
		case strings.HasPrefix(value, "/"):
			out = append(out, "--"+name+"="+localPath(t, mounts, value))
		default:
			out = append(out, a)
		}
	}
	return out
}

// route plays kube-proxy: the Service's ClusterIP and port lead to the
// container port its targetPort names, here the Guard's port.
func (inst *installation) route(t *testing.T, g *harness.Guard) {
	t.Helper()
	c := inst.deployment.Spec.Template.Spec.Containers[0]
	target := inst.service.Spec.Ports[0].TargetPort.String()
	webhookPort, _ := flag(c.Args, "port")
	if got := containerPort(&c, target); got != webhookPort {
		t.Fatalf("the Service targets container port %s (%s), but serve listens on --port=%s", got, target, webhookPort)
	}
	env.proxy.Route(inst.serviceAddr, net.JoinHostPort("127.0.0.1", strconv.Itoa(g.Port)))
	t.Cleanup(func() { env.proxy.Unroute(inst.serviceAddr) })
}

// startCertManagerController runs cert-manager's issuing controllers
// against the control plane.
func startCertManagerController(t *testing.T) *harness.Process {
	t.Helper()
	return startProcess(t, "cert-manager controller", env.certManagerController)
}

// startCAInjector runs cert-manager's cainjector against the control plane.
func startCAInjector(t *testing.T) *harness.Process {
	t.Helper()
	return startProcess(t, "cainjector", env.cainjector)
}

// startProcess runs bin --kubeconfig <admin> until t ends.
func startProcess(t *testing.T, name, bin string) *harness.Process {
	t.Helper()
	p, err := harness.StartProcess(name, bin, []string{"--kubeconfig", env.Kubeconfig}, filepath.Join(t.TempDir(), strings.ReplaceAll(name, " ", "-")+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Logs(60))
		}
	})
	return p
}

// webhookState is what a webhook configuration says about one of its
// webhooks.
type webhookState struct {
	name          string
	caBundle      []byte
	failurePolicy admissionregistrationv1.FailurePolicyType
	// workload: a workload webhook (config.workloads), whose failure policy
	// is webhook.workloadsFailurePolicy.
	workload bool
}

// webhookConfigurations returns every webhook of both configurations.
func (inst *installation) webhookConfigurations(t *testing.T) []webhookState {
	t.Helper()
	ctx := context.Background()
	api := env.Client.AdmissionregistrationV1()
	m, err := api.MutatingWebhookConfigurations().Get(ctx, inst.webhookConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.ValidatingWebhookConfigurations().Get(ctx, inst.webhookConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []webhookState
	for _, w := range m.Webhooks {
		out = append(out, webhookState{"MutatingWebhookConfiguration " + m.Name + " webhook " + w.Name, w.ClientConfig.CABundle, *w.FailurePolicy, false})
	}
	for _, w := range v.Webhooks {
		out = append(out, webhookState{"ValidatingWebhookConfiguration " + v.Name + " webhook " + w.Name, w.ClientConfig.CABundle, *w.FailurePolicy,
			slices.Contains(workloadWebhookNames, w.Name)})
	}
	return out
}

// waitCABundle waits until every webhook of both configurations carries
// want.
func (inst *installation) waitCABundle(t *testing.T, want []byte, injector *harness.Process) {
	t.Helper()
	var last []webhookState
	var missing []string
	ok := eventually(func() bool {
		last, missing = inst.webhookConfigurations(t), nil
		for _, w := range last {
			if !bytes.Equal(w.caBundle, want) {
				missing = append(missing, fmt.Sprintf("%s (%d bytes)", w.name, len(w.caBundle)))
			}
		}
		return len(missing) == 0
	})
	if !ok {
		exited, err := injector.Exited()
		t.Fatalf("cainjector (exited: %v %v) did not inject the CA into every webhook within %s: not into %v\ncainjector output:\n%s",
			exited, err, waitTimeout, missing, injector.Logs(40))
	}
}

// waitWebhooksReached waits until the API server's calls reach the guard:
// a rejected ServiceEntry comes back with the guard's rule code.
func waitWebhooksReached(t *testing.T, g *harness.Guard) {
	t.Helper()
	var last harness.Result
	if !eventually(func() bool {
		last = applyServiceEntryArgs(t, "default", "probe", "--dry-run=server")
		return strings.Contains(last.Output(), "EGR101")
	}) {
		t.Fatalf("the API server does not reach egress-guard through the Service:\n%s\negress-guard output:\n%s", last, g.Logs(50))
	}
}

// eventually polls cond every 200ms for up to waitTimeout.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(waitTimeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serviceEntry is a ServiceEntry for a host no configuration allows: the
// guard rejects it with EGR101.
func serviceEntry(namespace, name string) []byte {
	return fmt.Appendf(nil, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %s
  namespace: %s
spec:
  hosts: [not-allowed.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
`, name, namespace)
}

// applyPod sends a Pod on the node's network (EGR509 in the mesh) to the
// API server with --dry-run=server: the webhooks are called, nothing is
// stored.
func applyPod(t *testing.T, namespace, name string) harness.Result {
	t.Helper()
	pod := fmt.Appendf(nil, `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  hostNetwork: true
  containers:
  - name: app
    image: registry.example/app:1
`, name, namespace)
	return env.Kubectl(context.Background(), pod, "apply", "--dry-run=server", "-f", "-")
}

func applyServiceEntry(t *testing.T, namespace, name string) harness.Result {
	return applyServiceEntryArgs(t, namespace, name)
}

func applyServiceEntryArgs(t *testing.T, namespace, name string, extra ...string) harness.Result {
	t.Helper()
	return env.Kubectl(context.Background(), serviceEntry(namespace, name), append([]string{"apply", "-f", "-"}, extra...)...)
}

// applyScenario applies the scenario's objects through the chart's
// webhooks: rejected objects fail with their rule codes, mutated objects are
// stored fixed, compliant ones unchanged and with the platform policy's
// warning.
func applyScenario(t *testing.T, s *harness.Scenario) {
	for _, d := range s.Rejected {
		r := env.kubectl("apply", "-f", d.Path)
		if r.Err == nil || !strings.Contains(r.Output(), "admission webhook") {
			t.Errorf("%s must be refused by the webhook:\n%s", d, r)
			continue
		}
		for _, code := range d.ExpectCodes() {
			if !strings.Contains(r.Output(), code) {
				t.Errorf("%s: refused without rule code %s:\n%s", d, code, r)
			}
		}
	}
	for _, d := range s.Mutate {
		if r := env.kubectl("apply", "-f", d.Path); r.Err != nil {
			t.Errorf("%s must be admitted (fixed):\n%s", d, r)
			continue
		}
		want := s.ExpectedFor(d)
		if want == nil {
			t.Fatalf("%s has no expected form", d)
		}
		if got := storedSpec(t, d); !reflect.DeepEqual(got, want.Spec()) {
			t.Errorf("%s is stored as\n%s\nwant\n%s", d, harness.Indent(fmt.Sprint(got), "  "), harness.Indent(fmt.Sprint(want.Spec()), "  "))
		}
	}
	for _, d := range s.Compliant {
		r := env.kubectl("apply", "-f", d.Path)
		if r.Err != nil {
			t.Errorf("%s must be admitted:\n%s", d, r)
			continue
		}
		if !slices.Contains(s.Exempt, d.Obj.GetNamespace()) && !strings.Contains(r.Stderr, "PLT001") {
			t.Errorf("%s: no warning from the platform policy in the policies ConfigMap:\n%s", d, r)
		}
		if got := storedSpec(t, d); !reflect.DeepEqual(got, d.Spec()) {
			t.Errorf("%s was changed:\n%v", d, got)
		}
	}
}

// deleteScenarioAtEnd deletes the scenario's stored objects when t ends, so
// that the next installation's webhooks see them created again.
func deleteScenarioAtEnd(t *testing.T, s *harness.Scenario) {
	t.Cleanup(func() {
		for _, d := range append(slices.Clone(s.Mutate), s.Compliant...) {
			if r := env.kubectl("delete", "--ignore-not-found", "-f", d.Path); r.Err != nil {
				t.Errorf("deleting %s:\n%s", d, r)
			}
		}
	})
}

// storedSpec reads back the stored .spec of the document's object.
func storedSpec(t *testing.T, d *harness.Doc) any {
	t.Helper()
	r := env.kubectl("get", "-f", d.Path, "-o", "json")
	if r.Err != nil {
		t.Fatalf("reading back %s:\n%s", d, r)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON([]byte(r.Stdout)); err != nil {
		t.Fatal(err)
	}
	return harness.Canonical(obj.Object["spec"])
}
