package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/egress-guard/egress-guard/certs"
)

// servedTLS is a tlsServer started on a loopback port with a certificate
// its clients trust.
type servedTLS struct {
	srv  *tlsServer
	addr string
	pool *x509.CertPool
}

func startTLSServer(t *testing.T, h http.Handler, timeouts HTTPTimeouts) *servedTLS {
	t.Helper()
	now := time.Now()
	ca, err := certs.NewCA("test CA", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := certs.Issue(ca, []string{"127.0.0.1"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
	}
	srv := newTLSServer("127.0.0.1", 0, h, cfg, timeouts, 5*time.Second, logr.Discard())
	if err := srv.StartedChecker()(nil); err == nil {
		t.Error("ready before it started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	select {
	case <-srv.listening:
	case err := <-done:
		t.Fatalf("the server did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the server did not stop")
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &servedTLS{srv: srv, addr: srv.listener.String(), pool: pool}
}

// dial opens an HTTP/1.1 TLS connection, as a hand-written client.
func (s *servedTLS) dial(t *testing.T) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin reads conn until the server closes it; it fails the test when
// that takes longer than bound. It returns what the server sent.
func closedWithin(t *testing.T, conn net.Conn, bound time.Duration) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(bound))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held the connection after %s (read %q)", bound, got)
	}
	return string(got)
}

// The webhook server serves the endpoints over HTTP/2 and HTTP/1.1, and
// cuts off a client that sends its headers or its body too slowly, or keeps
// an idle connection open: none holds a connection and its goroutine.
func TestTLSServerBoundsConnections(t *testing.T) {
	s := newStack(t, stackOptions{limit: 2})
	mutate, validate := endpoints(s.deps, 0)
	mux := http.NewServeMux()
	mux.Handle(MutatePath, mutate)
	mux.Handle(ValidatePath, validate)
	served := startTLSServer(t, mux, HTTPTimeouts{ReadHeader: 300 * time.Millisecond, Read: 600 * time.Millisecond, Write: 5 * time.Second, Idle: time.Second})
	if err := served.srv.StartedChecker()(nil); err != nil {
		t.Errorf("not ready once started: %v", err)
	}

	for _, proto := range []string{"HTTP/2.0", "HTTP/1.1"} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: served.pool}, ForceAttemptHTTP2: proto == "HTTP/2.0"}
		if proto == "HTTP/1.1" {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		res, err := (&http.Client{Transport: tr}).Post("https://"+served.addr+ValidatePath+"?timeout=10s", "application/json", strings.NewReader(validReview))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Proto != proto || res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"uid":"0b0e8a3e-6f2c-4a55-9d38-2f3c1e7d9a01"`) {
			t.Errorf("%s: %s %d %s", proto, res.Proto, res.StatusCode, body)
		}
		tr.CloseIdleConnections()
	}

	t.Run("slow headers", func(t *testing.T) {
		conn := served.dial(t)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\n", ValidatePath)
		closedWithin(t, conn, 15*time.Second)
	})

	t.Run("slow body", func(t *testing.T) {
		conn := served.dial(t)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", ValidatePath, len(validReview), validReview[:50])
		got := closedWithin(t, conn, 15*time.Second)
		// The answer, if any got out, refuses the request.
		if got != "" && !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("answered %q", got)
		}
	})

	t.Run("idle connection", func(t *testing.T) {
		conn := served.dial(t)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", ValidatePath, len(validReview), validReview)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("HTTP %d", res.StatusCode)
		}
		closedWithin(t, conn, 15*time.Second)
	})
}

func TestHTTPTimeoutsValidate(t *testing.T) {
	ok := HTTPTimeouts{}.withDefaults()
	if err := ok.Validate(8 * time.Second); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		t    HTTPTimeouts
		eval time.Duration
		want string
	}{
		{HTTPTimeouts{ReadHeader: -1, Read: time.Second, Write: time.Minute, Idle: time.Second}, time.Second, "--read-header-timeout -1ns: must be positive"},
		{HTTPTimeouts{ReadHeader: time.Second, Read: time.Second, Write: 8 * time.Second, Idle: time.Second}, 8 * time.Second, "--write-timeout 8s: must exceed --evaluation-timeout 8s"},
	} {
		if err := tc.t.Validate(tc.eval); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.t, err, tc.want)
		}
	}
}
