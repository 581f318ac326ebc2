package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// HTTPTimeouts bound the webhook server's connections, so that a client that
// sends slowly, or never, cannot hold a connection and its goroutine.
type HTTPTimeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included.
	Read time.Duration
	// Write bounds a request from the end of its headers to the end of its
	// answer: it must exceed the evaluation timeout.
	Write time.Duration
	// Idle bounds the wait for the next request on a kept-alive connection.
	Idle time.Duration
}

// The default timeouts: the API server waits 30 seconds at most for a webhook
// (timeoutSeconds), so no request of its takes longer to read or answer.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	// DefaultIdleTimeout is the API server's own keep-alive (that of
	// http.DefaultTransport).
	DefaultIdleTimeout = 90 * time.Second
)

// withDefaults fills in the timeouts not set.
func (t HTTPTimeouts) withDefaults() HTTPTimeouts {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&t.ReadHeader, DefaultReadHeaderTimeout}, {&t.Read, DefaultReadTimeout}, {&t.Write, DefaultWriteTimeout}, {&t.Idle, DefaultIdleTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return t
}

// Validate checks that every timeout is set and that the write timeout leaves
// room for an evaluation.
func (t HTTPTimeouts) Validate(evaluation time.Duration) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-header", t.ReadHeader}, {"read", t.Read}, {"write", t.Write}, {"idle", t.Idle}} {
		if d.v <= 0 {
			return fmt.Errorf("--%s-timeout %s: must be positive", d.name, d.v)
		}
	}
	if t.Write <= evaluation {
		return fmt.Errorf("--write-timeout %s: must exceed --evaluation-timeout %s, or answers are cut off", t.Write, evaluation)
	}
	return nil
}

// tlsServer serves the webhook endpoints over TLS. controller-runtime's
// webhook.Server builds its own http.Server, with a header timeout but no
// read or write timeout, and gives no way to set them: a client trickling a
// body would hold its connection and goroutine forever. This server takes the
// same TLS setup (HTTP/2, the certificate from GetCertificate) with timeouts
// on every connection. The handler is controller-runtime's webhook mux, which
// keeps its per-path metrics.
type tlsServer struct {
	host     string
	addr     string
	handler  http.Handler
	tls      *tls.Config
	timeouts HTTPTimeouts
	// shutdown bounds the drain of requests in flight when ctx ends.
	shutdown time.Duration
	log      logr.Logger
	// started is set once the listener is open, at address listener.
	started   atomic.Bool
	listening chan struct{}
	listener  net.Addr
}

func newTLSServer(host string, port int, handler http.Handler, cfg *tls.Config, timeouts HTTPTimeouts, shutdown time.Duration, log logr.Logger) *tlsServer {
	return &tlsServer{
		host: host, addr: net.JoinHostPort(host, strconv.Itoa(port)), handler: handler, tls: cfg,
		timeouts: timeouts, shutdown: shutdown, log: log, listening: make(chan struct{}),
	}
}

// Start serves until ctx ends, then drains the requests in flight.
func (s *tlsServer) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls,
		ReadHeaderTimeout: s.timeouts.ReadHeader,
		ReadTimeout:       s.timeouts.Read,
		WriteTimeout:      s.timeouts.Write,
		IdleTimeout:       s.timeouts.Idle,
		MaxHeaderBytes:    1 << 20,
		// Requests in flight are not cancelled when shutdown begins: they
		// drain, each within its own deadline.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.listener = ln.Addr()
	s.started.Store(true)
	close(s.listening)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		s.log.Info("shutting down the webhook server", "timeout", s.shutdown)
		sctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Error(err, "shutting down the webhook server")
		}
	}()
	// The certificate comes from TLSConfig.GetCertificate: no files.
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-done
	return nil
}

// StartedChecker is healthy once the server accepts TLS connections.
func (s *tlsServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		if !s.started.Load() {
			return errors.New("webhook server has not been started yet")
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		addr := s.addr
		if tcp, ok := s.listener.(*net.TCPAddr); ok {
			addr = net.JoinHostPort(s.host, strconv.Itoa(tcp.Port))
		}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reachability only
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}
