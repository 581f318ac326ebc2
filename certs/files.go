package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// DefaultFilesPollInterval is how often Files looks for certificate files
// that are not there (or do not load) yet.
const DefaultFilesPollInterval = time.Second

// FilesOptions configure a Files source.
type FilesOptions struct {
	CertPath string // PEM certificate (chain), e.g. <cert-dir>/tls.crt
	KeyPath  string // PEM private key, e.g. <cert-dir>/tls.key
	// PollInterval is how often the files are tried until they load
	// (default DefaultFilesPollInterval).
	PollInterval time.Duration
	Log          logr.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Files serves a certificate and key read from files, typically a mounted
// Secret. Files that are missing or do not load at start are tried again
// until they do (a Secret volume may arrive late); until then Healthy fails.
// Once loaded, controller-runtime's certwatcher reloads them on change
// (file events, and a periodic re-read) and keeps the last good pair when a
// change does not load.
type Files struct {
	opts    FilesOptions
	watcher atomic.Pointer[certwatcher.CertWatcher]
}

var _ Source = (*Files)(nil)

// NewFiles returns a Files source; nothing is read before Start.
func NewFiles(o FilesOptions) *Files {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultFilesPollInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Files{opts: o}
}

// String names the files.
func (f *Files) String() string {
	return fmt.Sprintf("files %s and %s", f.opts.CertPath, f.opts.KeyPath)
}

// GetCertificate returns the loaded certificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.loaded()
}

// Healthy is nil while the loaded certificate is valid.
func (f *Files) Healthy() error {
	cert, err := f.loaded()
	if err != nil {
		return err
	}
	leaf, err := leafOf(cert)
	if err != nil {
		return fmt.Errorf("%s: %w", f.opts.CertPath, err)
	}
	if err := validAt(leaf, f.opts.Now()); err != nil {
		return fmt.Errorf("%s: %w", f.opts.CertPath, err)
	}
	return nil
}

func (f *Files) loaded() (*tls.Certificate, error) {
	if w := f.watcher.Load(); w != nil {
		if cert, _ := w.GetCertificate(nil); cert != nil {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("no serving certificate loaded yet from %s and %s", f.opts.CertPath, f.opts.KeyPath)
}

// Start waits until the files load, then watches them until ctx ends.
func (f *Files) Start(ctx context.Context) error {
	w, err := f.waitForFiles(ctx)
	if err != nil || w == nil {
		return err
	}
	f.watcher.Store(w)
	f.opts.Log.Info("serving certificate loaded", "cert", f.opts.CertPath, "key", f.opts.KeyPath)
	if err := w.Start(ctx); err != nil {
		return fmt.Errorf("watching %s and %s: %w", f.opts.CertPath, f.opts.KeyPath, err)
	}
	return nil
}

// waitForFiles tries the files until they load; it returns nil when ctx
// ends first.
func (f *Files) waitForFiles(ctx context.Context) (*certwatcher.CertWatcher, error) {
	tick := time.NewTicker(f.opts.PollInterval)
	defer tick.Stop()
	last := ""
	for {
		w, err := certwatcher.New(f.opts.CertPath, f.opts.KeyPath)
		if err == nil {
			return w, nil
		}
		if err.Error() != last {
			last = err.Error()
			f.opts.Log.Info("waiting for the serving certificate files", "cert", f.opts.CertPath, "key", f.opts.KeyPath, "reason", last)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-tick.C:
		}
	}
}
