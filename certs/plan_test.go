package certs

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func testPolicy() policy {
	return policy{names: []string{"a.example"}, certValidity: time.Hour, caValidity: 3 * time.Hour, propagation: 10 * time.Second}
}

// stateWith is a Secret state with ca signing (and first in the bundle),
// the other CAs after it, and leaf when not nil.
func stateWith(t *testing.T, ca *KeyPair, leaf *KeyPair, others ...*KeyPair) secretState {
	t.Helper()
	st := secretState{signer: ca, cas: []*x509.Certificate{ca.Cert}}
	for _, o := range others {
		st.cas = append(st.cas, o.Cert)
	}
	if leaf != nil {
		keyPEM, err := leaf.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		if st.leaf, err = keyPairFromPEM(leaf.CertPEM(), keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestPlanCA(t *testing.T) {
	p := testPolicy()
	ca := mustCA(t, 3*time.Hour, t0)
	for _, tc := range []struct {
		name string
		st   secretState
		now  time.Time
		want string // "" keeps the CA
	}{
		{"empty Secret", secretState{}, t0, "there is no CA"},
		{"bundle without a key", secretState{cas: []*x509.Certificate{ca.Cert}}, t0, "there is no usable CA private key"},
		{"fresh CA", stateWith(t, ca, nil), t0.Add(time.Hour), ""},
		{"just before renewal", stateWith(t, ca, nil), RenewAt(ca.Cert).Add(-time.Second), ""},
		{"due for renewal", stateWith(t, ca, nil), RenewAt(ca.Cert), "is due for renewal since"},
		{"expired", stateWith(t, ca, nil), ca.Cert.NotAfter, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := p.planCA(tc.st, tc.now)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("planCA = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanLeaf(t *testing.T) {
	p := testPolicy()
	oldCA := mustCA(t, 3*time.Hour, t0.Add(-2*time.Hour))
	ca := mustCA(t, 3*time.Hour, t0)
	leaf := mustIssue(t, ca, p.names, time.Hour, t0)
	oldLeaf := mustIssue(t, oldCA, p.names, time.Hour, t0.Add(-10*time.Minute))
	otherNames := mustIssue(t, ca, []string{"b.example"}, time.Hour, t0)
	longAgo := t0.Add(-time.Hour)

	for _, tc := range []struct {
		name      string
		st        secretState
		now       time.Time
		published time.Time
		issue     bool
		reason    string    // contained in the plan's reason
		at        time.Time // when not zero: the plan's next look
	}{
		{"none yet", stateWith(t, ca, nil), t0, t0, true, "there is no serving certificate", time.Time{}},
		{"current", stateWith(t, ca, leaf), t0.Add(time.Minute), longAgo, false, "", RenewAt(leaf.Cert)},
		{"due for renewal, CA published long ago", stateWith(t, ca, leaf), RenewAt(leaf.Cert), longAgo, true, "due for renewal", time.Time{}},
		{"expired", stateWith(t, ca, leaf), leaf.Cert.NotAfter, t0, true, "expired", time.Time{}},
		{"other names", stateWith(t, ca, otherNames), t0.Add(time.Minute), longAgo, true, "is for [b.example], want [a.example]", time.Time{}},
		// A new CA: the old certificate stays until the bundle with the new
		// CA has had time to propagate.
		{"old CA's, bundle just written", stateWith(t, ca, oldLeaf, oldCA), t0.Add(time.Second), t0, false, "waiting for the CA bundle to propagate", t0.Add(p.propagation)},
		{"old CA's, bundle propagated", stateWith(t, ca, oldLeaf, oldCA), t0.Add(p.propagation), t0, true, "is not signed by the current CA", time.Time{}},
		// Without a trusted certificate to keep serving there is nothing to
		// wait for.
		{"old CA's but old CA gone from the bundle", stateWith(t, ca, oldLeaf), t0.Add(time.Second), t0, true, "is not signed by the current CA", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := p.planLeaf(tc.st, tc.now, tc.published)
			if got.issue != tc.issue {
				t.Errorf("issue = %v (%s), want %v", got.issue, got.reason, tc.issue)
			}
			if !strings.Contains(got.reason, tc.reason) || tc.reason == "" && got.reason != "" {
				t.Errorf("reason %q, want %q", got.reason, tc.reason)
			}
			if !tc.at.IsZero() && !got.at.Equal(tc.at) {
				t.Errorf("at %s, want %s", got.at, tc.at)
			}
		})
	}
}

func TestNextCheck(t *testing.T) {
	p := testPolicy()
	oldCA := mustCA(t, 3*time.Hour, t0.Add(-150*time.Minute)) // expires at t0+30m
	ca := mustCA(t, 3*time.Hour, t0)
	leaf := mustIssue(t, ca, p.names, time.Hour, t0)
	for _, tc := range []struct {
		name string
		st   secretState
		plan leafPlan
		want time.Time
	}{
		{"the leaf's renewal", stateWith(t, ca, leaf), leafPlan{at: RenewAt(leaf.Cert)}, RenewAt(leaf.Cert)},
		{"an old CA's expiry", stateWith(t, ca, leaf, oldCA), leafPlan{at: RenewAt(leaf.Cert)}, oldCA.Cert.NotAfter},
		{"the CA's renewal", stateWith(t, ca, leaf), leafPlan{at: ca.Cert.NotAfter}, RenewAt(ca.Cert)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextCheck(tc.st, tc.plan); !got.Equal(tc.want) {
				t.Errorf("nextCheck = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseSecretData(t *testing.T) {
	ca := mustCA(t, time.Hour, t0)
	other := mustCA(t, time.Hour, t0)
	leaf := mustIssue(t, ca, []string{"a.example"}, time.Hour, t0)
	caKey, _ := ca.KeyPEM()
	otherKey, _ := other.KeyPEM()
	leafKey, _ := leaf.KeyPEM()
	bundle := EncodeCertificates([]*x509.Certificate{other.Cert, ca.Cert})

	st, problems := parseSecretData(map[string][]byte{
		CABundleKey: bundle, CAPrivateKeyKey: caKey, CertKey: leaf.CertPEM(), PrivateKeyKey: leafKey,
	})
	if len(problems) > 0 {
		t.Errorf("problems: %v", problems)
	}
	if st.signer == nil || !st.signer.Cert.Equal(ca.Cert) {
		t.Error("the signer is not the CA whose key is ca.key")
	}
	if len(st.cas) != 2 || st.leaf == nil || !st.leaf.Leaf.Equal(leaf.Cert) {
		t.Errorf("parsed %d CAs and leaf %v", len(st.cas), st.leaf != nil)
	}

	for _, tc := range []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"key of no CA in the bundle", map[string][]byte{CABundleKey: ca.CertPEM(), CAPrivateKeyKey: otherKey}, "ca.key: the key belongs to no certificate of ca.crt"},
		{"broken bundle", map[string][]byte{CABundleKey: []byte("x")}, "ca.crt: no PEM CERTIFICATE block"},
		{"mismatched leaf key", map[string][]byte{CertKey: leaf.CertPEM(), PrivateKeyKey: caKey}, "tls.crt and tls.key:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := parseSecretData(tc.data)
			if len(problems) != 1 || !strings.Contains(problems[0], tc.want) {
				t.Errorf("problems %q, want one containing %q", problems, tc.want)
			}
		})
	}
	if st, problems := parseSecretData(map[string][]byte{CertKey: {}, PrivateKeyKey: {}}); len(problems) > 0 || st.leaf != nil {
		t.Errorf("empty tls.crt and tls.key (not issued yet): problems %v", problems)
	}
}

func TestBundlePropagation(t *testing.T) {
	if got := bundlePropagation(DefaultCertValidity); got != MaxBundlePropagation {
		t.Errorf("a year: %s, want %s", got, MaxBundlePropagation)
	}
	if got := bundlePropagation(20 * time.Second); got != 2*time.Second {
		t.Errorf("20s: %s, want 2s", got)
	}
}
