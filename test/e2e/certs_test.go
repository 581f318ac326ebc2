//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egress-guard/egress-guard/test/harness"
)

const (
	// certsNamespace holds the self-managed Secrets and Leases.
	certsNamespace = "egress-guard-certs-e2e"
	// certScenario provides the configuration and the objects applied.
	certScenario = "000-http-mtls-origination"

	// Log lines of a self-managed guard.
	logLeading    = "leading: this replica writes the certificates"
	logLoaded     = "serving certificate loaded"
	logCAIssued   = "CA issued"
	logCertIssued = "serving certificate issued"
	logBundle     = "caBundle written"
)

// selfManaged describes an `egress-guard serve --certs self-managed`.
type selfManaged struct {
	secret string // Secret name in certsNamespace
	lease  string // --leader-election-id
	config string
	port   int // 0: a free one
	extra  []string
}

// startSelfManaged starts a self-managed guard that writes the caBundle of
// the shared webhook configurations, waits until it is ready (plain-HTTP
// /readyz: the CA is not known in advance) and stops it when t ends.
func startSelfManaged(t *testing.T, o selfManaged) *harness.Guard {
	t.Helper()
	args := []string{
		"--certs", "self-managed",
		"--kubeconfig", env.Kubeconfig,
		"--cert-secret", certsNamespace + "/" + o.secret,
		"--cert-dns-names", "127.0.0.1,localhost",
		"--mutating-webhook-configuration", webhookConfigName,
		"--validating-webhook-configuration", webhookConfigName,
		"--leader-election-id", o.lease,
	}
	return launchGuard(t, harness.GuardOptions{
		Bin:    env.guardBin,
		Config: o.config,
		Port:   o.port,
		Args:   append(args, o.extra...),
	})
}

// selfManagedWebhooks points the shared webhook configurations at port with
// an empty caBundle, for a self-managed guard to fill in. When t ends
// (after the guards it starts later have stopped) they get the harness CA
// back.
func selfManagedWebhooks(t *testing.T, port int) {
	t.Helper()
	w := env.webhooks
	t.Cleanup(func() {
		w.CABundle = env.certs.CAPEM
		if err := w.Register(context.Background(), w.URL); err != nil {
			t.Errorf("restoring the webhook configurations: %v", err)
		}
	})
	w.CABundle = nil
	if err := w.Register(context.Background(), fmt.Sprintf("https://127.0.0.1:%d", port)); err != nil {
		t.Fatal(err)
	}
}

// webhookBundles returns the caBundle of every webhook of both shared
// configurations, by "kind/webhook".
func webhookBundles(t *testing.T) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	api := env.Client.AdmissionregistrationV1()
	m, err := api.MutatingWebhookConfigurations().Get(ctx, webhookConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.ValidatingWebhookConfigurations().Get(ctx, webhookConfigName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, wh := range m.Webhooks {
		out["MutatingWebhookConfiguration/"+wh.Name] = wh.ClientConfig.CABundle
	}
	for _, wh := range v.Webhooks {
		out["ValidatingWebhookConfiguration/"+wh.Name] = wh.ClientConfig.CABundle
	}
	return out
}

func getSecret(name string) (*corev1.Secret, error) {
	return env.Client.CoreV1().Secrets(certsNamespace).Get(context.Background(), name, metav1.GetOptions{})
}

func leaseHolder(t *testing.T, name string) string {
	t.Helper()
	l, err := env.Client.CoordinationV1().Leases(certsNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Lease %s/%s: %v", certsNamespace, name, err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// servedCert is the certificate g shows in a TLS handshake.
func servedCert(t *testing.T, g *harness.Guard) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.Port), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", g.URL(), err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// verifyServing fails t unless cert is valid for 127.0.0.1 and localhost
// under the CAs of bundle.
func verifyServing(t *testing.T, cert *x509.Certificate, bundle []byte) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatalf("no CA in the bundle %q", bundle)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
}

func logHas(g *harness.Guard, s string) bool {
	data, err := os.ReadFile(g.LogPath)
	return err == nil && bytes.Contains(data, []byte(s))
}

// eventually polls cond until it is nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func loadCertScenario(t *testing.T) *harness.Scenario {
	t.Helper()
	s, err := harness.LoadScenario(filepath.Join(scenariosDir(), certScenario), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range s.Namespaces() {
		env.ensureNamespace(t, ns)
	}
	env.ensureNamespace(t, certsNamespace)
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// TestSelfManagedEndToEnd starts the binary with no certificate anywhere:
// it creates the Secret, writes the caBundle into both webhook
// configurations, and the API server then calls it over TLS verified with
// that bundle.
func TestSelfManagedEndToEnd(t *testing.T) {
	s := loadCertScenario(t)
	const secret = "self-managed-e2e"
	port := freePort(t)
	selfManagedWebhooks(t, port)
	for wh, b := range webhookBundles(t) {
		if len(b) > 0 {
			t.Fatalf("%s has a caBundle before the guard starts", wh)
		}
	}
	if _, err := getSecret(secret); err == nil {
		t.Fatalf("Secret %s/%s exists before the guard starts", certsNamespace, secret)
	}

	g := startSelfManaged(t, selfManaged{secret: secret, lease: "self-managed-e2e", config: s.Config, port: port})

	sec, err := getSecret(secret)
	if err != nil {
		t.Fatalf("the guard is ready but its Secret is not there: %v", err)
	}
	if sec.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %q, want %q", sec.Type, corev1.SecretTypeTLS)
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt", "ca.key"} {
		if len(sec.Data[k]) == 0 {
			t.Errorf("Secret has no %s", k)
		}
	}
	bundle := sec.Data["ca.crt"]
	for wh, b := range webhookBundles(t) {
		if !bytes.Equal(b, bundle) {
			t.Errorf("%s: caBundle is not the Secret's ca.crt", wh)
		}
	}
	served := servedCert(t, g)
	if !bytes.Contains(sec.Data["tls.crt"], pemOf(served)) {
		t.Errorf("the guard serves %s, not the Secret's tls.crt", served.SerialNumber.Text(16))
	}
	verifyServing(t, served, bundle)

	// The API server reaches the guard with the patched bundle ...
	if err := env.webhooks.WaitReachable(context.Background()); err != nil {
		t.Fatalf("%v; egress-guard output:\n%s", err, g.Logs(100))
	}
	// ... and kubectl apply goes through both webhooks.
	rejected, mutate := s.Rejected[0], s.Mutate[0]
	t.Cleanup(func() { env.deleteDocs(t, []*harness.Doc{rejected, mutate}) })
	t.Run("rejected", func(t *testing.T) {
		checkRejected(t, rejected, env.kubectl("apply", "-f", rejected.Path))
	})
	t.Run("mutated", func(t *testing.T) {
		if r := env.kubectl("apply", "-f", mutate.Path); r.Err != nil {
			t.Fatalf("kubectl apply of %s failed:\n%s", mutate, r)
		}
		obj, found := env.getObject(t, mutate)
		if !found {
			t.Fatalf("%s was not stored", mutate)
		}
		checkSpec(t, mutate.String(), expectedFor(t, s, mutate).Spec(), obj)
	})
}

// TestSelfManagedReplicas runs two replicas: only the leader writes, the
// other becomes ready by reading the Secret, and takes over when the leader
// stops.
func TestSelfManagedReplicas(t *testing.T) {
	s := loadCertScenario(t)
	const secret, lease = "self-managed-replicas", "self-managed-replicas"
	portA, portB := freePort(t), freePort(t)
	selfManagedWebhooks(t, portA)

	a := startSelfManaged(t, selfManaged{secret: secret, lease: lease, config: s.Config, port: portA})
	b := startSelfManaged(t, selfManaged{secret: secret, lease: lease, config: s.Config, port: portB})
	holder := leaseHolder(t, lease)
	if holder == "" {
		t.Fatal("the Lease has no holder")
	}
	if !logHas(a, logLeading) || !logHas(a, logCertIssued) || !logHas(a, logBundle) {
		t.Errorf("the first replica does not say that it leads and wrote the certificate and the bundle")
	}
	for _, line := range []string{logLeading, logCAIssued, logCertIssued, logBundle} {
		if logHas(b, line) {
			t.Errorf("the second replica logged %q while the first leads", line)
		}
	}
	if !logHas(b, logLoaded) {
		t.Errorf("the second replica does not say that it loaded the certificate from the Secret")
	}
	sec, err := getSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	certA, certB := servedCert(t, a), servedCert(t, b)
	if !certA.Equal(certB) || !bytes.Contains(sec.Data["tls.crt"], pemOf(certB)) {
		t.Errorf("replicas serve %s and %s; want both the Secret's certificate", certA.SerialNumber.Text(16), certB.SerialNumber.Text(16))
	}

	// The leader stops and releases the Lease; the other takes over.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the second replica takes the Lease over", func() error {
		if h := leaseHolder(t, lease); h == holder || h == "" {
			return fmt.Errorf("holder %q", h)
		}
		if !logHas(b, logLeading) {
			return errors.New("the second replica does not say that it leads")
		}
		return nil
	})
	// The new leader writes: pointing the webhooks at it resets their
	// caBundle (as a deploy would), and it writes the bundle again.
	selfManagedWebhooks(t, portB)
	eventually(t, 30*time.Second, "the new leader rewrites the caBundle", func() error {
		for wh, bundle := range webhookBundles(t) {
			if !bytes.Equal(bundle, sec.Data["ca.crt"]) {
				return fmt.Errorf("%s: caBundle is not the Secret's ca.crt", wh)
			}
		}
		return nil
	})
	if err := env.webhooks.WaitReachable(context.Background()); err != nil {
		t.Fatalf("%v; egress-guard output:\n%s", err, b.Logs(100))
	}
	rejected := s.Rejected[0]
	t.Cleanup(func() { env.deleteDocs(t, []*harness.Doc{rejected}) })
	checkRejected(t, rejected, env.kubectl("apply", "-f", rejected.Path))
}

// TestSelfManagedRotationUnderLoad rotates the serving certificate and the
// CA of two replicas, with short lifetimes, while a load generator posts
// AdmissionReviews trusting the caBundle currently in the webhook
// configuration, and the API server is asked to admit objects: not a single
// request may fail.
func TestSelfManagedRotationUnderLoad(t *testing.T) {
	s := loadCertScenario(t)
	const secret, lease = "self-managed-rotation", "self-managed-rotation"
	portA, portB := freePort(t), freePort(t)
	selfManagedWebhooks(t, portA)
	// The serving certificate is renewed about every 7s; the CA (30s)
	// after about 20s, its certificates 1s (a tenth of 10s) after the
	// bundle with it is written.
	lifetimes := []string{"--cert-validity", "10s", "--ca-validity", "30s"}
	a := startSelfManaged(t, selfManaged{secret: secret, lease: lease, config: s.Config, port: portA, extra: lifetimes})
	b := startSelfManaged(t, selfManaged{secret: secret, lease: lease, config: s.Config, port: portB, extra: lifetimes})
	if err := env.webhooks.WaitReachable(context.Background()); err != nil {
		t.Fatalf("%v; egress-guard output:\n%s", err, a.Logs(100))
	}

	sec, err := getSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	firstCA := sec.Data["ca.crt"]
	tr, err := newTrust(firstCA)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bundles := watchBundle(ctx, tr)
	load := newLoadGen([]string{a.URL(), b.URL()}, reviewBody(t, reviewRequest(t, s.Compliant[0])), tr)
	apiServer := &apiServerProbe{}

	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); load.run(ctx, 4) }()
	probed := make(chan struct{})
	go func() { defer close(probed); apiServer.run(ctx) }()

	// Until the CA has rotated and a certificate of the new CA was served,
	// after at least two renewals under the first CA.
	var caRotatedAt time.Time
	for ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		seen := load.seen()
		issuers := map[string]bool{}
		for _, iss := range seen {
			issuers[iss] = true
		}
		if caRotatedAt.IsZero() && len(issuers) >= 2 && len(seen) >= 3 {
			caRotatedAt = time.Now()
		}
		if !caRotatedAt.IsZero() && time.Since(caRotatedAt) > 2*time.Second {
			break
		}
	}
	if ctx.Err() != nil {
		t.Errorf("no CA rotation seen within 60s: serving certificates seen %v", load.seen())
	}
	cancel()
	<-done
	<-probed
	took := time.Since(start)
	load.report(t, took)
	apiServer.report(t)
	t.Logf("caBundle versions seen: %d; serving certificates (serial: issuer): %v", len(bundles()), load.seen())
	if n := len(bundles()); n < 2 {
		t.Errorf("the caBundle changed %d times, want a new CA added at least", n-1)
	}
	for _, g := range []*harness.Guard{a, b} {
		if g.Exited() {
			t.Errorf("%s exited during the rotation", g)
		}
	}
}

// watchBundle polls the ValidatingWebhookConfiguration's caBundle (the API
// server watches it) and puts every new one in force in tr until ctx ends.
// It returns the successive bundles seen so far.
func watchBundle(ctx context.Context, tr *trust) func() [][]byte {
	var mu sync.Mutex
	var seen [][]byte
	update := func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) > 0 && bytes.Equal(seen[len(seen)-1], b) {
			return
		}
		seen = append(seen, b)
		_ = tr.set(b) // a bundle without CAs keeps the last trust; the load shows it
	}
	go func() {
		for ctx.Err() == nil {
			v, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, webhookConfigName, metav1.GetOptions{})
			if err == nil && len(v.Webhooks) > 0 {
				update(v.Webhooks[0].ClientConfig.CABundle)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), seen...)
	}
}

var destinationRulesGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// apiServerProbe asks the API server, over and over, to admit a dry-run
// DestinationRule, which both webhooks intercept.
type apiServerProbe struct {
	ok, failed int
	errs       []string
}

func (p *apiServerProbe) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1",
			"kind":       "DestinationRule",
			"metadata":   map[string]any{"name": fmt.Sprintf("rotation-probe-%d", i), "namespace": probeNamespace},
			"spec":       map[string]any{"host": "probe." + probeNamespace + ".svc.cluster.local"},
		}}
		_, err := env.Dynamic.Resource(destinationRulesGVR).Namespace(probeNamespace).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.failed++
			if len(p.errs) < 5 {
				p.errs = append(p.errs, err.Error())
			}
		default:
			p.ok++
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// report is called once run has returned.
func (p *apiServerProbe) report(t *testing.T) {
	t.Helper()
	t.Logf("API server: %d dry-run creates admitted, %d failed", p.ok, p.failed)
	if p.failed > 0 {
		t.Errorf("%d dry-run creates through the API server failed, e.g.:\n%s", p.failed, indent(strings.Join(p.errs, "\n")))
	}
	if p.ok < 10 {
		t.Errorf("only %d dry-run creates through the API server: too few to show anything", p.ok)
	}
}

// TestFilesRotationUnderLoad rewrites the certificate files (in place) of a
// guard in files mode while a load generator posts AdmissionReviews: not a
// single request may fail, and the new certificates are served.
func TestFilesRotationUnderLoad(t *testing.T) {
	s := loadCertScenario(t)
	certs, err := harness.WriteServingCerts(filepath.Join(t.TempDir(), "certs"))
	if err != nil {
		t.Fatal(err)
	}
	g := launchGuard(t, harness.GuardOptions{Bin: env.guardBin, Certs: certs, Config: s.Config})
	tr, err := newTrust(certs.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	load := newLoadGen([]string{g.URL()}, reviewBody(t, reviewRequest(t, s.Compliant[0])), tr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); load.run(ctx, 4) }()

	var written []string
	for range 8 {
		time.Sleep(400 * time.Millisecond)
		serial, err := certs.Renew()
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, serial.Text(16))
	}
	time.Sleep(time.Second)
	cancel()
	<-done
	load.report(t, time.Since(start))
	seen := load.seen()
	n := 0
	for _, serial := range written {
		if _, ok := seen[serial]; ok {
			n++
		}
	}
	if n < 4 || seen[written[len(written)-1]] == "" {
		t.Errorf("served %d of the %d rewritten certificates (want at least 4 and the last): written %v, seen %v", n, len(written), written, seen)
	}
}

// pemOf is the PEM form of a certificate.
func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
