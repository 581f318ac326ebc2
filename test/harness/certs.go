package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Certs are the webhook server's certificates.
type Certs struct {
	Dir   string // ca.crt, tls.crt and tls.key: serve --cert-dir
	CAPEM []byte // the CA, for caBundle and clients

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64 // of the last serving certificate
	// ServerName is the name clients verify the serving certificate for
	// (default: the host they connect to).
	ServerName string
}

// WriteServingCerts writes a fresh CA and a serving certificate for
// 127.0.0.1 and localhost, valid for a day, into dir (ca.crt, tls.crt,
// tls.key). The first serving certificate has serial number 2.
func WriteServingCerts(dir string) (*Certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, caDER, err := issue(&x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egress-guard-harness-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the CA: %w", err)
	}
	c := &Certs{Dir: dir, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), ca: ca, caKey: caKey, serial: 1}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), c.CAPEM, 0o600); err != nil {
		return nil, err
	}
	if _, err := c.Renew(); err != nil {
		return nil, err
	}
	return c, nil
}

// Renew writes a new serving certificate and key, signed by the same CA,
// over tls.key and tls.crt (in place, key first), and returns its serial
// number.
func (c *Certs) Renew() (*big.Int, error) {
	c.serial++
	serial := big.NewInt(c.serial)
	_, key, der, err := issue(&x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}, c.ca, c.caKey)
	if err != nil {
		return nil, fmt.Errorf("creating the serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"tls.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{"tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
	} {
		if err := os.WriteFile(filepath.Join(c.Dir, f.name), f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return serial, nil
}

// issue creates a P-256 key and a certificate for it from tmpl, valid from
// an hour ago for a day, signed by parent (self-signed when parent is nil).
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, key, der, nil
}

// HTTPClient returns a client that trusts the CA.
func (c *Certs) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: c.ServerName}},
	}
}
