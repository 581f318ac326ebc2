package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const (
	// ManagedByLabel marks the Secret the writer creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "egress-guard"

	// maxRequeue bounds the writer's sleep, so that it looks again at least
	// this often whatever the certificates' lifetimes.
	maxRequeue = time.Hour
	// minRequeue keeps the writer from spinning when a deadline has passed.
	minRequeue = 100 * time.Millisecond
)

// eventRecorder is the part of an events.k8s.io recorder the writer uses.
type eventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// writer keeps the Secret's CA and serving certificate current and the CA
// bundle in the webhook configurations. Only the leader runs it.
//
// Order of writes, so that no request fails during a rotation:
//  1. a new CA goes into the Secret's ca.crt next to the CAs still valid,
//     and its key into ca.key;
//  2. ca.crt is written into every webhook's caBundle;
//  3. once that bundle has had time to propagate, a serving certificate
//     signed by the new CA replaces the old one in the Secret, and every
//     replica swaps it in memory. The old CA stays in the bundle until it
//     expires, so the old certificate keeps working meanwhile.
type writer struct {
	client   client.Client // writes
	reader   client.Reader // reads, uncached: decisions on fresh state
	secret   types.NamespacedName
	webhooks []webhookConfig
	policy   policy
	caPrefix string // CA common names are <prefix>@<unix time>
	recorder eventRecorder
	log      logr.Logger
	now      func() time.Time

	// publishedCA is the signing CA last known to be in every webhook's
	// caBundle, since publishedAt.
	publishedCA *x509.Certificate
	publishedAt time.Time
}

// Reconcile brings the Secret and the webhook configurations up to date
// and says when to look again.
func (w *writer) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	now := w.now()
	secret, err := w.getSecret(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	var data map[string][]byte
	if secret != nil {
		data = secret.Data
	}
	st, problems := parseSecretData(data)
	for _, p := range problems {
		w.log.Info("ignoring part of the Secret", "secret", w.secret, "problem", p)
	}

	if secret, st, err = w.ensureCA(ctx, secret, st, now); err != nil {
		return reconcile.Result{}, err
	}
	if err := w.publish(ctx, EncodeCertificates(st.cas)); err != nil {
		return reconcile.Result{}, err
	}
	if w.publishedCA == nil || !w.publishedCA.Equal(st.signer.Cert) {
		w.publishedCA, w.publishedAt = st.signer.Cert, now
	}

	plan := w.policy.planLeaf(st, now, w.publishedAt)
	if plan.issue {
		if st, err = w.issueLeaf(ctx, secret, st, now, plan.reason); err != nil {
			return reconcile.Result{}, err
		}
		plan = w.policy.planLeaf(st, now, w.publishedAt)
	} else if plan.reason != "" {
		w.log.Info("serving certificate renewal pending", "reason", plan.reason, "at", plan.at)
	}
	return reconcile.Result{RequeueAfter: clampRequeue(nextCheck(st, plan).Sub(now))}, nil
}

func clampRequeue(d time.Duration) time.Duration {
	return min(max(d, minRequeue), maxRequeue)
}

// getSecret reads the Secret; nil when it does not exist.
func (w *writer) getSecret(ctx context.Context) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := w.reader.Get(ctx, w.secret, s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", w.secret, err)
	}
	return s, nil
}

// ensureCA gives the Secret a signing CA that is not due for renewal, and
// drops expired CAs from its bundle.
func (w *writer) ensureCA(ctx context.Context, secret *corev1.Secret, st secretState, now time.Time) (*corev1.Secret, secretState, error) {
	reason := w.policy.planCA(st, now)
	keep := unexpired(st.cas, now)
	if reason == "" && len(keep) == len(st.cas) {
		return secret, st, nil
	}
	next := st
	next.cas = keep
	if reason != "" {
		ca, err := NewCA(fmt.Sprintf("%s@%d", w.caPrefix, now.Unix()), w.policy.caValidity, now)
		if err != nil {
			return nil, st, err
		}
		next.signer = ca
		next.cas = MergeBundle(now, ca.Cert, st.cas)
	}
	keyPEM, err := next.signer.KeyPEM()
	if err != nil {
		return nil, st, err
	}
	secret, err = w.writeSecret(ctx, secret, map[string][]byte{
		CABundleKey:     EncodeCertificates(next.cas),
		CAPrivateKeyKey: keyPEM,
	})
	if err != nil {
		return nil, st, err
	}
	if reason == "" {
		w.log.Info("expired CAs dropped from the bundle", "secret", w.secret, "cas", len(next.cas))
		return secret, next, nil
	}
	w.log.Info("CA issued", "secret", w.secret, "ca", describe(next.signer.Cert), "notAfter", next.signer.Cert.NotAfter, "reason", reason, "bundle", len(next.cas))
	w.recorder.Eventf(secret, nil, corev1.EventTypeNormal, "CAIssued", "Issue",
		"issued CA %s valid until %s: %s", describe(next.signer.Cert), next.signer.Cert.NotAfter.UTC().Format(time.RFC3339), reason)
	return secret, next, nil
}

// issueLeaf writes a new serving certificate signed by the signing CA.
func (w *writer) issueLeaf(ctx context.Context, secret *corev1.Secret, st secretState, now time.Time, reason string) (secretState, error) {
	kp, err := Issue(st.signer, w.policy.names, w.policy.certValidity, now)
	if err != nil {
		return st, err
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		return st, err
	}
	certPEM := kp.CertPEM()
	if secret, err = w.writeSecret(ctx, secret, map[string][]byte{CertKey: certPEM, PrivateKeyKey: keyPEM}); err != nil {
		return st, err
	}
	if st.leaf, err = keyPairFromPEM(certPEM, keyPEM); err != nil {
		return st, err
	}
	w.log.Info("serving certificate issued", "secret", w.secret, "certificate", describe(kp.Cert), "names", w.policy.names, "notAfter", kp.Cert.NotAfter, "ca", describe(st.signer.Cert), "reason", reason)
	w.recorder.Eventf(secret, nil, corev1.EventTypeNormal, "CertificateIssued", "Issue",
		"issued serving certificate %s for %v valid until %s: %s", describe(kp.Cert), w.policy.names, kp.Cert.NotAfter.UTC().Format(time.RFC3339), reason)
	return st, nil
}

// writeSecret creates the Secret with data, or updates the keys of data in
// it (optimistic concurrency: a conflict fails and the writer tries again).
func (w *writer) writeSecret(ctx context.Context, cur *corev1.Secret, data map[string][]byte) (*corev1.Secret, error) {
	if cur == nil {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: w.secret.Namespace,
				Name:      w.secret.Name,
				Labels:    map[string]string{ManagedByLabel: managedBy},
			},
			Type: corev1.SecretTypeTLS,
			// kubernetes.io/tls requires both keys; empty until issued.
			Data: map[string][]byte{CertKey: {}, PrivateKeyKey: {}},
		}
		maps.Copy(s.Data, data)
		if err := w.client.Create(ctx, s); err != nil {
			return nil, fmt.Errorf("creating Secret %s: %w", w.secret, err)
		}
		return s, nil
	}
	if cur.Type != corev1.SecretTypeTLS {
		return nil, fmt.Errorf("secret %s has type %q, want %q: delete it and egress-guard creates it", w.secret, cur.Type, corev1.SecretTypeTLS)
	}
	s := cur.DeepCopy()
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	maps.Copy(s.Data, data)
	if err := w.client.Update(ctx, s); err != nil {
		return nil, fmt.Errorf("updating Secret %s: %w", w.secret, err)
	}
	return s, nil
}

// webhookConfig is one of the two webhook configurations.
type webhookConfig struct {
	kind      string
	name      string
	newObject func() client.Object
	// setBundle sets the caBundle of every webhook of obj and returns how
	// many changed.
	setBundle func(obj client.Object, bundle []byte) int
}

func mutatingConfig(name string) webhookConfig {
	return webhookConfig{
		kind: "MutatingWebhookConfiguration", name: name,
		newObject: func() client.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
		setBundle: func(obj client.Object, bundle []byte) int {
			c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
			n := 0
			for i := range c.Webhooks {
				n += setBundle(&c.Webhooks[i].ClientConfig, bundle)
			}
			return n
		},
	}
}

func validatingConfig(name string) webhookConfig {
	return webhookConfig{
		kind: "ValidatingWebhookConfiguration", name: name,
		newObject: func() client.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
		setBundle: func(obj client.Object, bundle []byte) int {
			c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			n := 0
			for i := range c.Webhooks {
				n += setBundle(&c.Webhooks[i].ClientConfig, bundle)
			}
			return n
		},
	}
}

func setBundle(cc *admissionregistrationv1.WebhookClientConfig, bundle []byte) int {
	if bytes.Equal(cc.CABundle, bundle) {
		return 0
	}
	cc.CABundle = bundle
	return 1
}

// publish writes bundle as the caBundle of every webhook of both
// configurations. A configuration that does not exist is skipped (nothing
// calls it); the writer runs again when it appears.
func (w *writer) publish(ctx context.Context, bundle []byte) error {
	for _, wc := range w.webhooks {
		if err := w.publishTo(ctx, wc, bundle); err != nil {
			return fmt.Errorf("writing the caBundle of %s %s: %w", wc.kind, wc.name, err)
		}
	}
	return nil
}

func (w *writer) publishTo(ctx context.Context, wc webhookConfig, bundle []byte) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := wc.newObject()
		err := w.reader.Get(ctx, client.ObjectKey{Name: wc.name}, obj)
		if apierrors.IsNotFound(err) {
			w.log.Info("webhook configuration not found; its caBundle is written when it appears", "kind", wc.kind, "name", wc.name)
			return nil
		}
		if err != nil {
			return err
		}
		orig := obj.DeepCopyObject().(client.Object)
		n := wc.setBundle(obj, bundle)
		if n == 0 {
			return nil
		}
		if err := w.client.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return err
		}
		w.log.Info("caBundle written", "kind", wc.kind, "name", wc.name, "webhooks", n)
		return nil
	})
}
