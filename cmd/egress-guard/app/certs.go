package app

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/egress-guard/egress-guard/certs"
)

// Values of --certs.
const (
	certsFiles       = "files"
	certsSelfManaged = "self-managed"
)

// certFlags choose and configure the serving-certificate source.
type certFlags struct {
	mode string

	// files
	certDir  string
	certName string
	keyName  string

	// self-managed
	secret       string
	dnsNames     []string
	mutating     string
	validating   string
	certValidity time.Duration
	caValidity   time.Duration
	leNamespace  string
	leID         string
	kubeconfig   string
}

func (c *certFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&c.mode, "certs", certsFiles, "where the serving certificate comes from: files (--cert-dir, e.g. a Secret from cert-manager) or self-managed (egress-guard is its own CA, keeps the certificate in --cert-secret and writes the caBundle)")
	f.StringVar(&c.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "files: directory holding the serving certificate and key (waited for when missing, reloaded on change)")
	f.StringVar(&c.certName, "cert-name", "tls.crt", "files: certificate file name in --cert-dir")
	f.StringVar(&c.keyName, "key-name", "tls.key", "files: key file name in --cert-dir")
	f.StringVar(&c.secret, "cert-secret", "", "self-managed: NAMESPACE/NAME of the Secret holding the CA and the serving certificate (created when missing)")
	f.StringSliceVar(&c.dnsNames, "cert-dns-names", nil, "self-managed: the serving certificate's names, comma-separated; one that parses as an IP address becomes an IP SAN")
	f.StringVar(&c.mutating, "mutating-webhook-configuration", "", "self-managed: MutatingWebhookConfiguration whose webhooks get the caBundle")
	f.StringVar(&c.validating, "validating-webhook-configuration", "", "self-managed: ValidatingWebhookConfiguration whose webhooks get the caBundle")
	f.DurationVar(&c.certValidity, "cert-validity", certs.DefaultCertValidity, "self-managed: serving certificate lifetime; renewed two thirds into it")
	f.DurationVar(&c.caValidity, "ca-validity", certs.DefaultCAValidity, "self-managed: CA lifetime; renewed two thirds into it")
	f.StringVar(&c.leNamespace, "leader-election-namespace", "", "namespace of the leader-election Leases of the certificate writer and of the audit (default: the --cert-secret namespace, else the pod's)")
	f.StringVar(&c.leID, "leader-election-id", certs.DefaultLeaderElectionID, "self-managed: name of the leader-election Lease")
	f.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file, for self-managed certificates, --events and the audit (default: $KUBECONFIG, else the in-cluster config, else ~/.kube/config)")
}

// source checks the flags and builds the source they describe. Bad flags
// are usage errors naming the flag.
func (c *certFlags) source(f *pflag.FlagSet, log logr.Logger) (certs.Source, error) {
	filesOnly := []string{"cert-dir", "cert-name", "key-name"}
	selfManagedOnly := []string{
		"cert-secret", "cert-dns-names", "mutating-webhook-configuration", "validating-webhook-configuration",
		"cert-validity", "ca-validity", "leader-election-id",
	}
	switch c.mode {
	case certsFiles:
		if err := onlyIn(f, selfManagedOnly, certsSelfManaged); err != nil {
			return nil, err
		}
		return certs.NewFiles(certs.FilesOptions{
			CertPath: filepath.Join(c.certDir, c.certName),
			KeyPath:  filepath.Join(c.certDir, c.keyName),
			Log:      log,
		}), nil
	case certsSelfManaged:
		if err := onlyIn(f, filesOnly, certsFiles); err != nil {
			return nil, err
		}
		o, err := c.selfManagedOptions(log)
		if err != nil {
			return nil, err
		}
		return certs.NewSelfManaged(o)
	}
	return nil, usageError("--certs %q: must be %s or %s", c.mode, certsFiles, certsSelfManaged)
}

// onlyIn fails when one of names was given: they apply to mode only.
func onlyIn(f *pflag.FlagSet, names []string, mode string) error {
	for _, n := range names {
		if f.Changed(n) {
			return usageError("--%s applies only to --certs %s", n, mode)
		}
	}
	return nil
}

// selfManagedOptions checks the self-managed flags and loads the client
// configuration.
func (c *certFlags) selfManagedOptions(log logr.Logger) (certs.SelfManagedOptions, error) {
	o := certs.SelfManagedOptions{
		DNSNames:                       c.dnsNames,
		MutatingWebhookConfiguration:   c.mutating,
		ValidatingWebhookConfiguration: c.validating,
		CertValidity:                   c.certValidity,
		CAValidity:                     c.caValidity,
		LeaderElectionNamespace:        c.leNamespace,
		LeaderElectionID:               c.leID,
		Log:                            log,
	}
	var err error
	if o.Secret, err = parseSecretRef(c.secret); err != nil {
		return o, err
	}
	if len(c.dnsNames) == 0 {
		return o, usageError("--cert-dns-names is required with --certs self-managed")
	}
	for _, n := range c.dnsNames {
		if err := certs.ValidateName(n); err != nil {
			return o, usageError("--cert-dns-names: %v", err)
		}
	}
	for _, n := range []struct{ flag, v string }{
		{"mutating-webhook-configuration", c.mutating},
		{"validating-webhook-configuration", c.validating},
		{"leader-election-id", c.leID},
	} {
		flag, v := n.flag, n.v
		if v == "" {
			return o, usageError("--%s is required with --certs self-managed", flag)
		}
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return o, usageError("--%s %q: %s", flag, v, strings.Join(errs, "; "))
		}
	}
	if c.leNamespace != "" {
		if errs := validation.IsDNS1123Label(c.leNamespace); len(errs) > 0 {
			return o, usageError("--leader-election-namespace %q: %s", c.leNamespace, strings.Join(errs, "; "))
		}
	}
	if c.certValidity < certs.MinValidity {
		return o, usageError("--cert-validity %s: must be at least %s", c.certValidity, certs.MinValidity)
	}
	if c.caValidity < c.certValidity {
		return o, usageError("--ca-validity %s: must be at least --cert-validity (%s)", c.caValidity, c.certValidity)
	}
	if o.Config, err = restConfig(c.kubeconfig); err != nil {
		return o, err
	}
	return o, nil
}

// parseSecretRef parses --cert-secret NAMESPACE/NAME.
func parseSecretRef(s string) (types.NamespacedName, error) {
	if s == "" {
		return types.NamespacedName{}, usageError("--cert-secret is required with --certs self-managed")
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, usageError("--cert-secret %q: want NAMESPACE/NAME", s)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return types.NamespacedName{}, usageError("--cert-secret %q: namespace: %s", s, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return types.NamespacedName{}, usageError("--cert-secret %q: name: %s", s, strings.Join(errs, "; "))
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// restConfig loads the client configuration: the kubeconfig file when
// given, else controller-runtime's search ($KUBECONFIG, in-cluster,
// ~/.kube/config).
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := ctrlconfig.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("no API server configuration: %w", err)
		}
		return cfg, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, usageError("--kubeconfig %s: %v", kubeconfig, err)
	}
	return cfg, nil
}
