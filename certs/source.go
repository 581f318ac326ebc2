package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"time"
)

// Source provides the webhook server's serving certificate.
type Source interface {
	// GetCertificate returns the certificate to serve; it is meant for
	// tls.Config.GetCertificate and fails while none is loaded.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Start loads and keeps the certificate current until ctx ends.
	Start(ctx context.Context) error
	// Healthy is nil only while a valid, unexpired certificate is loaded.
	Healthy() error
}

// current is the certificate in force, swapped atomically.
type current struct {
	cert atomic.Pointer[tls.Certificate]
	// notLoaded is Healthy's and GetCertificate's error before the first load.
	notLoaded error
	now       func() time.Time
}

func (c *current) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cert.Load(); cert != nil {
		return cert, nil
	}
	return nil, c.notLoaded
}

func (c *current) healthy() error {
	cert := c.cert.Load()
	if cert == nil {
		return c.notLoaded
	}
	if cert.Leaf == nil {
		return errors.New("the serving certificate has no parsed leaf")
	}
	return validAt(cert.Leaf, c.now())
}
