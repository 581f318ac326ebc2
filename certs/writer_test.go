package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const (
	mutatingName   = "egress-guard"
	validatingName = "egress-guard"
)

var secretKey = types.NamespacedName{Namespace: "egress-guard", Name: "egress-guard-certs"}

// rig runs the writer against a fake API server with a fake clock and
// records every write.
type rig struct {
	t      *testing.T
	client client.WithWatch
	w      *writer
	now    time.Time
	events *events.FakeRecorder
	writes []string
	// onWrite runs after every successful write.
	onWrite func(what string)
	// failPatch, when set, may fail a Patch before it reaches the client.
	failPatch func(obj client.Object) error
}

func mutatingConfiguration(webhooks ...string) *admissionregistrationv1.MutatingWebhookConfiguration {
	c := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mutatingName}}
	for _, n := range webhooks {
		c.Webhooks = append(c.Webhooks, admissionregistrationv1.MutatingWebhook{Name: n})
	}
	return c
}

func validatingConfiguration(webhooks ...string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	c := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: validatingName}}
	for _, n := range webhooks {
		c.Webhooks = append(c.Webhooks, admissionregistrationv1.ValidatingWebhook{Name: n})
	}
	return c
}

func newRig(t *testing.T, p policy, objs ...client.Object) *rig {
	t.Helper()
	r := &rig{t: t, now: t0, events: events.NewFakeRecorder(1000)}
	record := func(what string, err error) error {
		if err == nil {
			r.writes = append(r.writes, what)
			if r.onWrite != nil {
				r.onWrite(what)
			}
		}
		return err
	}
	r.client = fake.NewClientBuilder().
		WithScheme(clientgoscheme.Scheme).
		WithObjects(objs...).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				return record("create "+kindOf(obj), c.Create(ctx, obj, opts...))
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				return record("update "+kindOf(obj), c.Update(ctx, obj, opts...))
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				if r.failPatch != nil {
					if err := r.failPatch(obj); err != nil {
						return err
					}
				}
				return record("patch "+kindOf(obj), c.Patch(ctx, obj, patch, opts...))
			},
		}).
		Build()
	r.w = &writer{
		client:   r.client,
		reader:   r.client,
		secret:   secretKey,
		webhooks: []webhookConfig{mutatingConfig(mutatingName), validatingConfig(validatingName)},
		policy:   p,
		caPrefix: "test-ca",
		recorder: r.events,
		log:      testr.New(t),
		now:      func() time.Time { return r.now },
	}
	return r
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *corev1.Secret:
		return "Secret"
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		return "MutatingWebhookConfiguration"
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		return "ValidatingWebhookConfiguration"
	}
	return fmt.Sprintf("%T", obj)
}

func (r *rig) reconcile() reconcile.Result {
	r.t.Helper()
	res, err := r.w.Reconcile(context.Background(), reconcile.Request{NamespacedName: secretKey})
	if err != nil {
		r.t.Fatalf("reconcile at %s: %v", r.now, err)
	}
	return res
}

func (r *rig) secret() (*corev1.Secret, secretState) {
	r.t.Helper()
	s := &corev1.Secret{}
	if err := r.client.Get(context.Background(), secretKey, s); err != nil {
		r.t.Fatalf("reading the Secret: %v", err)
	}
	st, problems := parseSecretData(s.Data)
	if len(problems) > 0 {
		r.t.Fatalf("the Secret does not parse: %v", problems)
	}
	return s, st
}

// bundles returns the caBundle of every webhook of both configurations
// that exist, by "kind/webhook".
func (r *rig) bundles() map[string][]byte {
	r.t.Helper()
	out := map[string][]byte{}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := r.client.Get(context.Background(), client.ObjectKey{Name: mutatingName}, m); err == nil {
		for _, wh := range m.Webhooks {
			out["mutating/"+wh.Name] = wh.ClientConfig.CABundle
		}
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := r.client.Get(context.Background(), client.ObjectKey{Name: validatingName}, v); err == nil {
		for _, wh := range v.Webhooks {
			out["validating/"+wh.Name] = wh.ClientConfig.CABundle
		}
	}
	return out
}

func (r *rig) eventReasons() []string {
	var out []string
	for {
		select {
		case e := <-r.events.Events:
			out = append(out, strings.Fields(e)[1])
		default:
			return out
		}
	}
}

func TestWriterBootstrap(t *testing.T) {
	p := testPolicy()
	r := newRig(t, p, mutatingConfiguration("a", "b"), validatingConfiguration("c"))
	res := r.reconcile()

	s, st := r.secret()
	if s.Type != corev1.SecretTypeTLS || s.Labels[ManagedByLabel] != "egress-guard" {
		t.Errorf("Secret type %q, labels %v: want %s, managed by egress-guard", s.Type, s.Labels, corev1.SecretTypeTLS)
	}
	if st.signer == nil || len(st.cas) != 1 || st.leaf == nil {
		t.Fatalf("Secret: signer %v, %d CAs, leaf %v; want a CA and a serving certificate", st.signer != nil, len(st.cas), st.leaf != nil)
	}
	leaf := st.leaf.Leaf
	if !signedBy(leaf, st.signer.Cert) || !hasNames(leaf, p.names) {
		t.Errorf("serving certificate %s for %v; want one signed by the CA for %v", describe(leaf), sans(leaf), p.names)
	}
	if got := leaf.NotAfter.Sub(t0); got != p.certValidity {
		t.Errorf("serving certificate valid for %s, want %s", got, p.certValidity)
	}
	if got := st.signer.Cert.NotAfter.Sub(t0); got != p.caValidity {
		t.Errorf("CA valid for %s, want %s", got, p.caValidity)
	}
	bundles := r.bundles()
	if len(bundles) != 3 {
		t.Fatalf("%d webhooks, want 3", len(bundles))
	}
	for wh, b := range bundles {
		if !bytes.Equal(b, s.Data[CABundleKey]) {
			t.Errorf("%s: caBundle is not the Secret's ca.crt", wh)
		}
	}
	// The CA first, then the bundle, then the certificate it signed.
	want := []string{"create Secret", "patch MutatingWebhookConfiguration", "patch ValidatingWebhookConfiguration", "update Secret"}
	if strings.Join(r.writes, ", ") != strings.Join(want, ", ") {
		t.Errorf("writes %v, want %v", r.writes, want)
	}
	if got := r.eventReasons(); strings.Join(got, ",") != "CAIssued,CertificateIssued" {
		t.Errorf("events %v, want CAIssued, CertificateIssued", got)
	}
	if want := RenewAt(leaf).Sub(t0); res.RequeueAfter != want {
		t.Errorf("requeue after %s, want the serving certificate's renewal in %s", res.RequeueAfter, want)
	}

	// Nothing to do: nothing written.
	r.writes = nil
	r.now = t0.Add(time.Minute)
	r.reconcile()
	if len(r.writes) > 0 {
		t.Errorf("second reconcile wrote %v, want nothing", r.writes)
	}
}

// TestWriterRotationNeverBreaksTrust rotates the serving certificate and
// the CA many times on a fake clock. After every single write, the serving
// certificate in the Secret must be trusted by the caBundle of every
// webhook; a certificate signed by a new CA may only be written after the
// bundle holding that CA has had time to propagate.
func TestWriterRotationNeverBreaksTrust(t *testing.T) {
	p := testPolicy()
	r := newRig(t, p, mutatingConfiguration("a", "b"), validatingConfiguration("c"))

	published := map[string]time.Time{} // CA serial -> when every webhook had it
	caSerials, leafSerials := map[string]bool{}, map[string]bool{}
	maxBundle := 0
	var leafWritten bool
	r.onWrite = func(what string) {
		s := &corev1.Secret{}
		if err := r.client.Get(context.Background(), secretKey, s); err != nil {
			return
		}
		st, _ := parseSecretData(s.Data)
		if st.signer != nil {
			caSerials[st.signer.Cert.SerialNumber.String()] = true
		}
		bundles := r.bundles()
		for _, ca := range st.cas {
			everywhere := true
			for _, b := range bundles {
				everywhere = everywhere && bytes.Contains(b, EncodeCertificates([]*x509.Certificate{ca}))
			}
			if _, seen := published[ca.SerialNumber.String()]; everywhere && !seen {
				published[ca.SerialNumber.String()] = r.now
			}
		}
		for wh, b := range bundles {
			cas, err := ParseCertificates(b)
			if err == nil {
				maxBundle = max(maxBundle, len(cas))
			}
			if st.leaf != nil && (err != nil || !trusted(st.leaf.Leaf, cas, r.now)) {
				t.Errorf("at %s after %s: %s does not trust serving certificate %s", r.now, what, wh, describe(st.leaf.Leaf))
			}
		}
		if st.leaf == nil || leafSerials[st.leaf.Leaf.SerialNumber.String()] {
			return
		}
		leafSerials[st.leaf.Leaf.SerialNumber.String()] = true
		var issuer *x509.Certificate
		for _, ca := range st.cas {
			if signedBy(st.leaf.Leaf, ca) {
				issuer = ca
			}
		}
		if at, ok := published[issuer.SerialNumber.String()]; leafWritten && (!ok || r.now.Sub(at) < p.propagation) {
			t.Errorf("at %s: serving certificate signed by CA %s written %s after its bundle (published %v), want at least %s", r.now, describe(issuer), r.now.Sub(at), ok, p.propagation)
		}
		leafWritten = true
	}

	end := t0.Add(10 * time.Hour)
	for steps := 0; r.now.Before(end); steps++ {
		if steps > 1000 {
			t.Fatalf("more than 1000 reconciles by %s", r.now)
		}
		res := r.reconcile()
		if res.RequeueAfter <= 0 {
			t.Fatalf("at %s: no requeue", r.now)
		}
		r.now = r.now.Add(res.RequeueAfter)
		_, st := r.secret()
		if err := validAt(st.leaf.Leaf, r.now); err != nil {
			t.Fatalf("at %s, when the writer looks again, the serving certificate is no longer valid: %v", r.now, err)
		}
	}
	// 10 hours: the CA (3h, renewed after 2h) rotates 4 times, the serving
	// certificate (1h, renewed after 40m) many more.
	if len(caSerials) < 5 || len(leafSerials) < 12 {
		t.Errorf("%d CAs and %d serving certificates in 10 hours; want at least 5 and 12", len(caSerials), len(leafSerials))
	}
	if maxBundle != 2 {
		t.Errorf("the bundle held at most %d CAs, want 2 (the new CA next to the previous one)", maxBundle)
	}
}

func TestWriterRewritesAResetBundle(t *testing.T) {
	r := newRig(t, testPolicy(), mutatingConfiguration("a"), validatingConfiguration("c"))
	r.reconcile()
	s, _ := r.secret()

	// A deploy resets the mutating configuration's caBundle.
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := r.client.Get(context.Background(), client.ObjectKey{Name: mutatingName}, m); err != nil {
		t.Fatal(err)
	}
	m.Webhooks[0].ClientConfig.CABundle = nil
	if err := r.client.Update(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	r.writes = nil
	r.now = r.now.Add(time.Minute)
	r.reconcile()
	if strings.Join(r.writes, ",") != "patch MutatingWebhookConfiguration" {
		t.Errorf("writes %v, want the mutating configuration patched only", r.writes)
	}
	for wh, b := range r.bundles() {
		if !bytes.Equal(b, s.Data[CABundleKey]) {
			t.Errorf("%s: caBundle is not the Secret's ca.crt", wh)
		}
	}
}

func TestWriterConfigurationAppearingLater(t *testing.T) {
	r := newRig(t, testPolicy(), validatingConfiguration("c"))
	r.reconcile()
	if _, st := r.secret(); st.leaf == nil {
		t.Fatal("no serving certificate while the mutating configuration is missing")
	}
	if err := r.client.Create(context.Background(), mutatingConfiguration("a")); err != nil {
		t.Fatal(err)
	}
	r.reconcile()
	s, _ := r.secret()
	if b := r.bundles()["mutating/a"]; !bytes.Equal(b, s.Data[CABundleKey]) {
		t.Errorf("the mutating configuration created later has caBundle %q, want the Secret's ca.crt", b)
	}
}

func TestWriterRetriesAConflict(t *testing.T) {
	r := newRig(t, testPolicy(), mutatingConfiguration("a"), validatingConfiguration("c"))
	conflicts := 0
	r.failPatch = func(obj client.Object) error {
		if _, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok && conflicts == 0 {
			conflicts++
			return apierrors.NewConflict(schema.GroupResource{Resource: "validatingwebhookconfigurations"}, validatingName, fmt.Errorf("changed"))
		}
		return nil
	}
	r.reconcile()
	if conflicts != 1 {
		t.Fatalf("%d conflicts, want 1", conflicts)
	}
	s, _ := r.secret()
	if b := r.bundles()["validating/c"]; !bytes.Equal(b, s.Data[CABundleKey]) {
		t.Error("the caBundle was not written after the conflict")
	}
}

func TestWriterReissuesForNewNames(t *testing.T) {
	p := testPolicy()
	r := newRig(t, p, mutatingConfiguration("a"), validatingConfiguration("c"))
	r.reconcile()
	p.names = []string{"b.example", "127.0.0.1"}
	r.w.policy = p
	r.now = r.now.Add(p.propagation)
	r.reconcile()
	if _, st := r.secret(); !hasNames(st.leaf.Leaf, p.names) {
		t.Errorf("serving certificate for %v, want %v", sans(st.leaf.Leaf), p.names)
	}
}

func TestWriterRefusesASecretOfAnotherType(t *testing.T) {
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretKey.Namespace, Name: secretKey.Name}, Type: corev1.SecretTypeOpaque}
	r := newRig(t, testPolicy(), opaque, mutatingConfiguration("a"), validatingConfiguration("c"))
	_, err := r.w.Reconcile(context.Background(), reconcile.Request{NamespacedName: secretKey})
	want := `secret egress-guard/egress-guard-certs has type "Opaque", want "kubernetes.io/tls"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
}

func TestWriterStartsOverWithoutTheCAKey(t *testing.T) {
	r := newRig(t, testPolicy(), mutatingConfiguration("a"), validatingConfiguration("c"))
	r.reconcile()
	s, before := r.secret()
	delete(s.Data, CAPrivateKeyKey)
	if err := r.client.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(time.Minute)
	r.reconcile()
	_, after := r.secret()
	if after.signer == nil || after.signer.Cert.Equal(before.signer.Cert) {
		t.Fatal("no new CA after the CA key was lost")
	}
	// The old CA stays trusted: the serving certificate it signed is still
	// in use until the new bundle has propagated.
	if len(after.cas) != 2 || !after.leaf.Leaf.Equal(before.leaf.Leaf) {
		t.Errorf("%d CAs, same serving certificate %v; want both CAs and the old certificate until the bundle propagated", len(after.cas), after.leaf.Leaf.Equal(before.leaf.Leaf))
	}
}
