package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Defaults of SelfManagedOptions.
const (
	DefaultCertValidity     = 365 * 24 * time.Hour
	DefaultCAValidity       = 10 * 365 * 24 * time.Hour
	DefaultLeaderElectionID = "egress-guard-certs"
	// MinValidity is the shortest certificate lifetime accepted: renewal
	// and propagation need a few seconds.
	MinValidity = 10 * time.Second
)

// SelfManagedOptions configure a SelfManaged source.
type SelfManagedOptions struct {
	// Config reaches the API server.
	Config *rest.Config
	// Secret holds the CA and the serving certificate.
	Secret types.NamespacedName
	// DNSNames are the serving certificate's SANs; a name that parses as an
	// IP address becomes an IP SAN.
	DNSNames []string
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration name
	// the configurations whose webhooks get the caBundle.
	MutatingWebhookConfiguration   string
	ValidatingWebhookConfiguration string
	// CertValidity and CAValidity are the lifetimes of the serving
	// certificate and the CA; each is renewed two thirds into its lifetime.
	CertValidity time.Duration
	CAValidity   time.Duration
	// LeaderElectionNamespace holds the Lease (default: the Secret's).
	LeaderElectionNamespace string
	// LeaderElectionID names the Lease (default DefaultLeaderElectionID).
	LeaderElectionID string
	Log              logr.Logger
}

// SelfManaged issues its own CA and serving certificate into a Secret and
// the CA bundle into the webhook configurations; see the package
// documentation.
type SelfManaged struct {
	opts    SelfManagedOptions
	current current
	log     logr.Logger
}

var _ Source = (*SelfManaged)(nil)

// ValidateName checks a serving certificate name: an IP address, or a DNS
// subdomain, optionally with a leading "*." wildcard.
func ValidateName(name string) error {
	if net.ParseIP(name) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(strings.TrimPrefix(name, "*.")); len(errs) > 0 {
		return fmt.Errorf("%q is neither an IP address nor a DNS name: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// Validate says what is wrong with the options, naming the field.
func (o SelfManagedOptions) Validate() error {
	var errs []error
	if o.Config == nil {
		errs = append(errs, errors.New("Config: not set"))
	}
	if o.Secret.Namespace == "" || o.Secret.Name == "" {
		errs = append(errs, fmt.Errorf("Secret: %q: namespace and name are required", o.Secret))
	}
	if len(o.DNSNames) == 0 {
		errs = append(errs, errors.New("DNSNames: at least one name is required"))
	}
	for i, n := range o.DNSNames {
		if err := ValidateName(n); err != nil {
			errs = append(errs, fmt.Errorf("DNSNames[%d]: %w", i, err))
		}
	}
	if o.MutatingWebhookConfiguration == "" {
		errs = append(errs, errors.New("MutatingWebhookConfiguration: required"))
	}
	if o.ValidatingWebhookConfiguration == "" {
		errs = append(errs, errors.New("ValidatingWebhookConfiguration: required"))
	}
	if o.CertValidity < MinValidity {
		errs = append(errs, fmt.Errorf("CertValidity: %s is shorter than %s", o.CertValidity, MinValidity))
	}
	if o.CAValidity < o.CertValidity {
		errs = append(errs, fmt.Errorf("CAValidity: %s is shorter than CertValidity %s", o.CAValidity, o.CertValidity))
	}
	return errors.Join(errs...)
}

// NewSelfManaged validates the options; nothing reaches the API server
// before Start.
func NewSelfManaged(o SelfManagedOptions) (*SelfManaged, error) {
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = o.Secret.Namespace
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("self-managed certificates: %w", err)
	}
	return &SelfManaged{
		opts: o,
		log:  o.Log,
		current: current{
			notLoaded: fmt.Errorf("no serving certificate loaded yet from Secret %s", o.Secret),
			now:       time.Now,
		},
	}, nil
}

// newManager sets up the manager with the reader and the writer.
func (s *SelfManaged) newManager() (manager.Manager, error) {
	mgr, err := manager.New(s.opts.Config, s.managerOptions())
	if err != nil {
		return nil, err
	}
	if err := s.addReader(mgr); err != nil {
		return nil, err
	}
	if err := s.addWriter(mgr); err != nil {
		return nil, err
	}
	return mgr, nil
}

// managerOptions: leader election on a Lease, informers restricted to the
// one Secret and the two webhook configurations, no servers of its own.
func (s *SelfManaged) managerOptions() manager.Options {
	o := s.opts
	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	return manager.Options{
		Logger:                        s.log,
		LeaderElection:                true,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{o.Secret.Namespace: {}},
				Field:      byName(o.Secret.Name),
			},
			&admissionregistrationv1.MutatingWebhookConfiguration{}:   {Field: byName(o.MutatingWebhookConfiguration)},
			&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: byName(o.ValidatingWebhookConfiguration)},
		}},
	}
}

// addReader runs on every replica: it loads the serving certificate from
// the Secret whenever the Secret changes.
func (s *SelfManaged) addReader(mgr manager.Manager) error {
	read := func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		return s.read(ctx, mgr.GetCache(), req)
	}
	c, err := controller.New("egress-guard-certs-reader", mgr, controller.Options{
		Reconciler:         reconcile.Func(read),
		NeedLeaderElection: ptr.To(false),
	})
	if err != nil {
		return err
	}
	return c.Watch(source.Kind(mgr.GetCache(), &corev1.Secret{}, &handler.TypedEnqueueRequestForObject[*corev1.Secret]{}))
}

// addWriter runs on the leader only: it reconciles the Secret and the
// webhook configurations when any of them changes, when a certificate is
// due, and once at the start.
func (s *SelfManaged) addWriter(mgr manager.Manager) error {
	o := s.opts
	w := &writer{
		client:   mgr.GetClient(),
		reader:   mgr.GetAPIReader(),
		secret:   o.Secret,
		webhooks: []webhookConfig{mutatingConfig(o.MutatingWebhookConfiguration), validatingConfig(o.ValidatingWebhookConfiguration)},
		policy: policy{
			names:        o.DNSNames,
			certValidity: o.CertValidity,
			caValidity:   o.CAValidity,
			propagation:  bundlePropagation(o.CertValidity),
		},
		caPrefix: "egress-guard-ca",
		recorder: mgr.GetEventRecorder("egress-guard-certs"),
		log:      s.log.WithName("writer"),
		now:      time.Now,
	}
	c, err := controller.New("egress-guard-certs-writer", mgr, controller.Options{Reconciler: w, MaxConcurrentReconciles: 1})
	if err != nil {
		return err
	}
	req := reconcile.Request{NamespacedName: o.Secret}
	always := func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{req} }
	for _, obj := range []client.Object{
		&corev1.Secret{},
		&admissionregistrationv1.MutatingWebhookConfiguration{},
		&admissionregistrationv1.ValidatingWebhookConfiguration{},
	} {
		if err := c.Watch(source.Kind(mgr.GetCache(), obj, handler.EnqueueRequestsFromMapFunc(always))); err != nil {
			return err
		}
	}
	start := source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		s.log.Info("leading: this replica writes the certificates", "secret", o.Secret, "lease", o.LeaderElectionNamespace+"/"+o.LeaderElectionID)
		q.Add(req)
		return nil
	})
	return c.Watch(start)
}

// String names the Secret.
func (s *SelfManaged) String() string {
	return fmt.Sprintf("self-managed Secret %s", s.opts.Secret)
}

// GetCertificate returns the serving certificate loaded from the Secret.
func (s *SelfManaged) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.get(hello)
}

// Healthy is nil while the loaded serving certificate is valid.
func (s *SelfManaged) Healthy() error { return s.current.healthy() }

// Start runs leader election, the reader and (when leading) the writer
// until ctx ends. Losing the lease without ctx ending is an error.
func (s *SelfManaged) Start(ctx context.Context) error {
	mgr, err := s.newManager()
	if err != nil {
		return fmt.Errorf("self-managed certificates: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("self-managed certificates: %w", err)
	}
	return nil
}

// read loads the serving certificate from the Secret. A Secret that is gone
// or holds nothing usable leaves the loaded certificate in place.
func (s *SelfManaged) read(ctx context.Context, c client.Reader, req reconcile.Request) (reconcile.Result, error) {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, req.NamespacedName, secret); err != nil {
		if apierrors.IsNotFound(err) {
			s.log.Info("Secret not found; keeping the loaded serving certificate", "secret", req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	s.current.load(s.log, secret.Data, fmt.Sprintf("Secret %s", req.NamespacedName))
	return reconcile.Result{}, nil
}

// load swaps in the serving certificate of data (tls.crt and tls.key) when
// it differs from the loaded one, and either it is valid or the loaded one
// is not.
func (c *current) load(log logr.Logger, data map[string][]byte, from string) {
	if len(data[CertKey]) == 0 && len(data[PrivateKeyKey]) == 0 {
		log.Info("no serving certificate in the Secret yet", "from", from)
		return
	}
	next, err := keyPairFromPEM(data[CertKey], data[PrivateKeyKey])
	if err != nil {
		log.Error(err, "ignoring the serving certificate", "from", from)
		return
	}
	cur := c.cert.Load()
	if cur != nil && bytes.Equal(cur.Certificate[0], next.Certificate[0]) {
		return
	}
	now := c.now()
	if err := validAt(next.Leaf, now); err != nil && cur != nil && validAt(cur.Leaf, now) == nil {
		log.Error(err, "ignoring the serving certificate; keeping the loaded one", "from", from)
		return
	}
	c.cert.Store(next)
	log.Info("serving certificate loaded", "from", from, "certificate", describe(next.Leaf), "notAfter", next.Leaf.NotAfter)
}
