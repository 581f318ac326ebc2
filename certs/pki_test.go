package certs

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func mustCA(t *testing.T, validity time.Duration, now time.Time) *KeyPair {
	t.Helper()
	ca, err := NewCA("test-ca", validity, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *KeyPair, names []string, validity time.Duration, now time.Time) *KeyPair {
	t.Helper()
	kp, err := Issue(ca, names, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestNewCA(t *testing.T) {
	ca := mustCA(t, 24*time.Hour, t0)
	c := ca.Cert
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("IsCA %v, KeyUsage %b: want a CA that signs certificates", c.IsCA, c.KeyUsage)
	}
	if want := t0.Add(24 * time.Hour); !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter %s, want %s", c.NotAfter, want)
	}
	if want := t0.Add(-maxBackdate); !c.NotBefore.Equal(want) {
		t.Errorf("NotBefore %s, want %s (backdated by %s)", c.NotBefore, want, maxBackdate)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	other := mustCA(t, 24*time.Hour, t0)
	if c.SerialNumber.Cmp(other.Cert.SerialNumber) == 0 {
		t.Error("two CAs share a serial number")
	}
}

func TestIssueVerifiesForDNSNamesAndIPs(t *testing.T) {
	ca := mustCA(t, 24*time.Hour, t0)
	kp := mustIssue(t, ca, []string{"egress-guard.system.svc", "127.0.0.1", "::1"}, time.Hour, t0)
	if got, want := kp.Cert.DNSNames, []string{"egress-guard.system.svc"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("DNSNames %v, want %v", got, want)
	}
	if len(kp.Cert.IPAddresses) != 2 || !kp.Cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IPAddresses %v, want [127.0.0.1 ::1]", kp.Cert.IPAddresses)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, host := range []string{"egress-guard.system.svc", "127.0.0.1", "::1"} {
		_, err := kp.Cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := kp.Cert.Verify(x509.VerifyOptions{DNSName: "other.svc", Roots: roots, CurrentTime: t0}); err == nil {
		t.Error("verified for a name it was not issued for")
	}
	other := x509.NewCertPool()
	other.AddCert(mustCA(t, 24*time.Hour, t0).Cert)
	if _, err := kp.Cert.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: other, CurrentTime: t0}); err == nil {
		t.Error("verified against another CA")
	}
}

func TestIssueNeverOutlivesTheCA(t *testing.T) {
	ca := mustCA(t, time.Hour, t0)
	kp := mustIssue(t, ca, []string{"a.example"}, 10*time.Hour, t0.Add(30*time.Minute))
	if !kp.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", kp.Cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueErrors(t *testing.T) {
	ca := mustCA(t, time.Hour, t0)
	if _, err := Issue(ca, nil, time.Hour, t0); err == nil || !strings.Contains(err.Error(), "no DNS names") {
		t.Errorf("no names: got %v", err)
	}
	if _, err := Issue(ca, []string{"a"}, 0, t0); err == nil || !strings.Contains(err.Error(), "not positive") {
		t.Errorf("zero validity: got %v", err)
	}
}

func TestRenewAtTwoThirds(t *testing.T) {
	c := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(3 * time.Hour)}
	if got, want := RenewAt(c), t0.Add(2*time.Hour); !got.Equal(want) {
		t.Errorf("RenewAt %s, want %s", got, want)
	}
}

func TestBackdateIsATenthForShortLifetimes(t *testing.T) {
	ca := mustCA(t, 30*time.Second, t0)
	if want := t0.Add(-3 * time.Second); !ca.Cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore %s, want %s", ca.Cert.NotBefore, want)
	}
}

func TestHasNames(t *testing.T) {
	ca := mustCA(t, time.Hour, t0)
	kp := mustIssue(t, ca, []string{"b.example", "a.example", "127.0.0.1"}, time.Hour, t0)
	for _, tc := range []struct {
		names []string
		want  bool
	}{
		{[]string{"a.example", "b.example", "127.0.0.1"}, true},
		{[]string{"127.0.0.1", "b.example", "a.example", "a.example"}, true},
		{[]string{"a.example", "b.example"}, false},
		{[]string{"a.example", "b.example", "127.0.0.1", "c.example"}, false},
		{[]string{"a.example", "b.example", "127.0.0.2"}, false},
	} {
		if got := hasNames(kp.Cert, tc.names); got != tc.want {
			t.Errorf("hasNames(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}

func TestPEMRoundTrip(t *testing.T) {
	ca := mustCA(t, time.Hour, t0)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(ca.Key) {
		t.Error("parsed key differs")
	}
	other := mustCA(t, time.Hour, t0)
	certs, err := ParseCertificates(EncodeCertificates([]*x509.Certificate{ca.Cert, other.Cert}))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(ca.Cert) || !certs[1].Equal(other.Cert) {
		t.Errorf("parsed %d certificates, want the two in order", len(certs))
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
		parse            func([]byte) error
	}{
		{"no certificate", "garbage", "no PEM CERTIFICATE block", func(b []byte) error { _, err := ParseCertificates(b); return err }},
		{"bad certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1:", func(b []byte) error { _, err := ParseCertificates(b); return err }},
		{"no key", "garbage", "no PEM block", func(b []byte) error { _, err := ParseKey(b); return err }},
		{"wrong key type", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", `"RSA PRIVATE KEY": want PRIVATE KEY or EC PRIVATE KEY`, func(b []byte) error { _, err := ParseKey(b); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestMergeBundle(t *testing.T) {
	oldest := mustCA(t, time.Hour, t0.Add(-2*time.Hour)).Cert // expired at t0
	old := mustCA(t, 3*time.Hour, t0.Add(-2*time.Hour)).Cert  // valid until t0+1h
	next := mustCA(t, 3*time.Hour, t0).Cert
	got := MergeBundle(t0, next, []*x509.Certificate{old, oldest, next, old})
	if len(got) != 2 || !got[0].Equal(next) || !got[1].Equal(old) {
		t.Fatalf("bundle of %d certificates; want the new CA then the old one, without the expired one or duplicates", len(got))
	}
	if got := unexpired([]*x509.Certificate{oldest, old, next}, t0.Add(time.Hour)); len(got) != 1 || !got[0].Equal(next) {
		t.Errorf("unexpired an hour later: %d certificates, want the new CA only", len(got))
	}
}

func TestSignedBy(t *testing.T) {
	ca, other := mustCA(t, time.Hour, t0), mustCA(t, time.Hour, t0)
	kp := mustIssue(t, ca, []string{"a.example"}, time.Hour, t0)
	if !signedBy(kp.Cert, ca.Cert) {
		t.Error("not signed by its CA")
	}
	if signedBy(kp.Cert, other.Cert) {
		t.Error("signed by another CA")
	}
}
