package certs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// writePair writes kp as tls.crt and tls.key into dir.
func writePair(t *testing.T, dir string, kp *KeyPair) {
	t.Helper()
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Key first: a certificate with the old key does not load, and the
	// watcher keeps the old pair until both match.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), kp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 10 seconds.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func servedIs(f *Files, want *KeyPair) func() error {
	return func() error {
		cert, err := f.GetCertificate(nil)
		if err != nil {
			return err
		}
		if !cert.Leaf.Equal(want.Cert) {
			return fmt.Errorf("serving %s, want %s", describe(cert.Leaf), describe(want.Cert))
		}
		return nil
	}
}

func TestFilesWaitsForTheFilesThenReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // does not exist yet
	f := NewFiles(FilesOptions{
		CertPath: filepath.Join(dir, "tls.crt"), KeyPath: filepath.Join(dir, "tls.key"),
		PollInterval: 20 * time.Millisecond, Log: testr.New(t),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})

	time.Sleep(100 * time.Millisecond)
	if err := f.Healthy(); err == nil || !strings.Contains(err.Error(), "no serving certificate loaded yet") {
		t.Errorf("without files: Healthy() = %v, want not loaded", err)
	}
	if _, err := f.GetCertificate(nil); err == nil {
		t.Error("without files: GetCertificate succeeded")
	}
	select {
	case err := <-done:
		t.Fatalf("Start returned without the files: %v", err)
	default:
	}

	ca := mustCA(t, 24*time.Hour, time.Now())
	first := mustIssue(t, ca, []string{"a.example"}, time.Hour, time.Now())
	writePair(t, dir, first)
	eventually(t, "loading the files once they appear", servedIs(f, first))
	if err := f.Healthy(); err != nil {
		t.Errorf("after loading: Healthy() = %v", err)
	}

	second := mustIssue(t, ca, []string{"a.example"}, time.Hour, time.Now())
	writePair(t, dir, second)
	eventually(t, "reloading rewritten files", servedIs(f, second))

	// A broken rewrite keeps the last good pair.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := servedIs(f, second)(); err != nil {
		t.Errorf("after a broken rewrite: %v", err)
	}
}

func TestFilesHealthyFailsOnExpiredCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, 24*time.Hour, t0)
	writePair(t, dir, mustIssue(t, ca, []string{"a.example"}, time.Hour, t0))
	now := t0
	f := NewFiles(FilesOptions{
		CertPath: filepath.Join(dir, "tls.crt"), KeyPath: filepath.Join(dir, "tls.key"),
		PollInterval: 20 * time.Millisecond, Log: testr.New(t), Now: func() time.Time { return now },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Start(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, "loading", f.Healthy)
	now = t0.Add(time.Hour)
	if err := f.Healthy(); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("after expiry: Healthy() = %v, want expired", err)
	}
}
