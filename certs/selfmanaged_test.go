package certs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// secretData is what the writer stores for leaf.
func secretData(t *testing.T, leaf *KeyPair) map[string][]byte {
	t.Helper()
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{CertKey: leaf.CertPEM(), PrivateKeyKey: keyPEM}
}

func TestCurrentHealthyTransitions(t *testing.T) {
	now := t0
	c := &current{notLoaded: errors.New("no serving certificate loaded yet from Secret ns/name"), now: func() time.Time { return now }}
	log := testr.New(t)
	ca := mustCA(t, 24*time.Hour, t0)
	first := mustIssue(t, ca, []string{"a.example"}, time.Hour, t0)

	wantErr := func(what, want string) {
		t.Helper()
		err := c.healthy()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Healthy() = %v, want an error containing %q", what, err, want)
		}
	}
	serving := func() *KeyPair {
		t.Helper()
		cert, err := c.get(nil)
		if err != nil {
			t.Fatalf("GetCertificate: %v", err)
		}
		for _, kp := range []*KeyPair{first} {
			if cert.Leaf.Equal(kp.Cert) {
				return kp
			}
		}
		return nil
	}

	wantErr("before any load", "no serving certificate loaded yet")
	if _, err := c.get(nil); err == nil {
		t.Error("GetCertificate succeeded before any load")
	}
	c.load(log, map[string][]byte{CertKey: {}, PrivateKeyKey: {}}, "test")
	wantErr("after an empty Secret", "no serving certificate loaded yet")
	c.load(log, map[string][]byte{CertKey: []byte("garbage"), PrivateKeyKey: []byte("garbage")}, "test")
	wantErr("after a broken Secret", "no serving certificate loaded yet")

	c.load(log, secretData(t, first), "test")
	if err := c.healthy(); err != nil {
		t.Errorf("after loading a valid certificate: %v", err)
	}
	if serving() != first {
		t.Error("not serving the loaded certificate")
	}

	// A broken or expired update keeps the valid certificate.
	c.load(log, map[string][]byte{CertKey: []byte("garbage"), PrivateKeyKey: []byte("garbage")}, "test")
	expired := mustIssue(t, ca, []string{"a.example"}, time.Minute, t0.Add(-time.Hour))
	c.load(log, secretData(t, expired), "test")
	if serving() != first || c.healthy() != nil {
		t.Error("a broken or expired update replaced the valid certificate")
	}

	now = first.Cert.NotAfter
	wantErr("at expiry", "expired at")

	// When the loaded one has expired, a valid one is taken.
	second := mustIssue(t, ca, []string{"a.example"}, time.Hour, now)
	c.load(log, secretData(t, second), "test")
	if err := c.healthy(); err != nil {
		t.Errorf("after loading a renewed certificate: %v", err)
	}
	if cert, _ := c.get(nil); !cert.Leaf.Equal(second.Cert) {
		t.Error("not serving the renewed certificate")
	}
}

func TestSelfManagedOptionsValidate(t *testing.T) {
	good := SelfManagedOptions{
		Config:                         &rest.Config{Host: "https://127.0.0.1:6443"},
		Secret:                         types.NamespacedName{Namespace: "ns", Name: "certs"},
		DNSNames:                       []string{"egress-guard.ns.svc", "127.0.0.1"},
		MutatingWebhookConfiguration:   "m",
		ValidatingWebhookConfiguration: "v",
		CertValidity:                   time.Hour,
		CAValidity:                     time.Hour,
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*SelfManagedOptions)
		want   string
	}{
		{"no config", func(o *SelfManagedOptions) { o.Config = nil }, "Config: not set"},
		{"no secret name", func(o *SelfManagedOptions) { o.Secret.Name = "" }, "Secret:"},
		{"no names", func(o *SelfManagedOptions) { o.DNSNames = nil }, "DNSNames: at least one"},
		{"bad name", func(o *SelfManagedOptions) { o.DNSNames = []string{"ok.example", "Not_A_Name"} }, `DNSNames[1]: "Not_A_Name" is neither an IP address nor a DNS name`},
		{"no mutating", func(o *SelfManagedOptions) { o.MutatingWebhookConfiguration = "" }, "MutatingWebhookConfiguration: required"},
		{"no validating", func(o *SelfManagedOptions) { o.ValidatingWebhookConfiguration = "" }, "ValidatingWebhookConfiguration: required"},
		{"short validity", func(o *SelfManagedOptions) { o.CertValidity = time.Second }, "CertValidity: 1s is shorter than 10s"},
		{"CA shorter", func(o *SelfManagedOptions) { o.CAValidity = 30 * time.Minute }, "CAValidity: 30m0s is shorter than CertValidity 1h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.change(&o)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"egress-guard.system.svc": true,
		"*.example.com":           true,
		"127.0.0.1":               true,
		"::1":                     true,
		"localhost":               true,
		"UPPER.example":           false,
		"a..b":                    false,
		"":                        false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}
