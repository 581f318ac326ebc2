package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// maxBackdate bounds how far before its issue a certificate starts to be
// valid, for clocks that run behind the issuer's.
const maxBackdate = 5 * time.Minute

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA creates a self-signed CA (ECDSA P-256) valid for validity from now.
func NewCA(commonName string, validity time.Duration, now time.Time) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	kp, err := create(tmpl, nil, validity, now)
	if err != nil {
		return nil, fmt.Errorf("creating the CA: %w", err)
	}
	return kp, nil
}

// Issue creates a serving certificate (ECDSA P-256) for names signed by
// ca. A name that parses as an IP address becomes an IP SAN, the others DNS
// SANs. It is valid for validity from now, but never past the CA.
func Issue(ca *KeyPair, names []string, validity time.Duration, now time.Time) (*KeyPair, error) {
	if len(names) == 0 {
		return nil, errors.New("issuing the serving certificate: no DNS names")
	}
	dns, ips := splitNames(names)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dns,
		IPAddresses: ips,
	}
	kp, err := create(tmpl, ca, validity, now)
	if err != nil {
		return nil, fmt.Errorf("issuing the serving certificate for %v: %w", names, err)
	}
	return kp, nil
}

// create makes a key and a certificate for it from tmpl, signed by parent
// (self-signed when parent is nil).
func create(tmpl *x509.Certificate, parent *KeyPair, validity time.Duration, now time.Time) (*KeyPair, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("validity %s is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-min(validity/10, maxBackdate)).Truncate(time.Second)
	tmpl.NotAfter = now.Add(validity).Truncate(time.Second)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
		if tmpl.NotAfter.After(parent.Cert.NotAfter) {
			tmpl.NotAfter = parent.Cert.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// splitNames sorts names into DNS names and IP addresses.
func splitNames(names []string) (dns []string, ips []net.IP) {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// hasNames reports whether c's SANs are exactly names (in any order).
func hasNames(c *x509.Certificate, names []string) bool {
	want := slices.Clone(names)
	have := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	for i, n := range want {
		if ip := net.ParseIP(n); ip != nil {
			want[i] = ip.String()
		}
	}
	slices.Sort(want)
	slices.Sort(have)
	return slices.Equal(slices.Compact(want), slices.Compact(have))
}

// RenewAt is when c is due for renewal: two thirds into its lifetime.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// validAt reports why c is not valid at now, or nil.
func validAt(c *x509.Certificate, now time.Time) error {
	switch {
	case now.Before(c.NotBefore):
		return fmt.Errorf("certificate %s is not valid before %s", describe(c), c.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(c.NotAfter):
		return fmt.Errorf("certificate %s expired at %s", describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// describe names a certificate in messages: subject and serial number.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", c.Subject.CommonName, c.SerialNumber.Text(16))
}

// signedBy reports whether ca signed c.
func signedBy(c, ca *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, ca.RawSubject) && c.CheckSignatureFrom(ca) == nil
}

// CertPEM is the certificate in PEM form.
func (kp *KeyPair) CertPEM() []byte { return EncodeCertificates([]*x509.Certificate{kp.Cert}) }

// KeyPEM is the private key in PKCS #8 PEM form.
func (kp *KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(kp.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertificates is the certificates as PEM blocks, in order.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// ParseCertificates parses the CERTIFICATE blocks of PEM data, skipping
// blocks of other types.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(data) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

// ParseKey parses an ECDSA private key in PKCS #8 or SEC 1 PEM form.
func ParseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is a %T, want ECDSA", key)
	}
	return ec, nil
}

// MergeBundle returns the CA bundle made of first followed by the
// certificates of rest that are still valid at now, without duplicates.
func MergeBundle(now time.Time, first *x509.Certificate, rest []*x509.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{first}
	for _, c := range rest {
		if !now.Before(c.NotAfter) {
			continue
		}
		if slices.ContainsFunc(out, func(o *x509.Certificate) bool { return o.Equal(c) }) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// unexpired returns the certificates valid (or not yet valid) at now.
func unexpired(certs []*x509.Certificate, now time.Time) []*x509.Certificate {
	return slices.DeleteFunc(slices.Clone(certs), func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) })
}

// leafOf returns the parsed leaf of a tls.Certificate.
func leafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// keyPairFromPEM parses a certificate and key, and sets the leaf.
func keyPairFromPEM(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf, err = leafOf(&c); err != nil {
		return nil, err
	}
	return &c, nil
}
