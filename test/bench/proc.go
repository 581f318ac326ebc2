package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egress-guard/egress-guard/test/harness"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// writeCerts writes a CA and a serving certificate for 127.0.0.1 (ca.crt,
// tls.crt, tls.key) into dir, and returns the CA pool clients trust.
func writeCerts(dir string) (*x509.CertPool, error) {
	certs, err := harness.WriteServingCerts(dir)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certs.CAPEM) {
		return nil, fmt.Errorf("no CA certificate in %s", dir)
	}
	return pool, nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// server is a webhook server process under test.
type server struct {
	name    string
	url     string // https://127.0.0.1:port
	readyz  []string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// start runs the server's command, its output going to a log file in dir,
// and waits until one of its readiness URLs answers 200.
func start(ctx context.Context, name, dir string, port int, readyz []string, client *http.Client, env []string, argv []string) (*server, error) {
	s := &server{
		name:    name,
		url:     fmt.Sprintf("https://127.0.0.1:%d", port),
		readyz:  readyz,
		logPath: filepath.Join(dir, name+".log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.Env = append(os.Environ(), env...)
	// The server dies with the bench, whatever the bench dies of.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, u := range readyz {
			if get(ctx, client, u) == nil {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s", name, s.waitErr, s.logTail())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not ready after 60s (%s):\n%s", name, strings.Join(readyz, ", "), s.logTail())
		}
	}
}

func get(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// alive reports an error if the process has exited.
func (s *server) alive() error {
	select {
	case <-s.exited:
		return fmt.Errorf("%s exited (%v):\n%s", s.name, s.waitErr, s.logTail())
	default:
		return nil
	}
}

// stop sends SIGTERM and, after a grace period, SIGKILL.
func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// logTail is the end of the server's log.
func (s *server) logTail() string {
	data, _ := os.ReadFile(s.logPath)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

// cpu is the process's user+system CPU time so far.
func (s *server) cpu() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime+stime from a /proc/<pid>/stat line.
func parseStatCPU(data []byte) (time.Duration, error) {
	// The command name (field 2) may hold spaces; fields after it are plain.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// selfCPU is the bench process's own CPU time so far.
func selfCPU() time.Duration {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	d, _ := parseStatCPU(data)
	return d
}

// rss is the process's resident set size in bytes.
func (s *server) rss() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// newTransport is a keep-alive client transport trusting pool. With h2 it
// speaks HTTP/2 when the server offers it, one connection per transport
// (requests multiplexed on it); without, HTTP/1.1 only, at most conns
// connections, each carrying one request at a time (a request waits for a
// free connection).
func newTransport(pool *x509.CertPool, h2 bool, conns int) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        max(64, conns),
		MaxIdleConnsPerHost: max(64, conns),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: 10 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	if h2 {
		protocols.SetHTTP2(true)
		t.ForceAttemptHTTP2 = true
	} else {
		t.MaxConnsPerHost = conns
	}
	t.Protocols = &protocols
	return t
}

// buildNoop compiles the baseline server into dir: from the bench's source
// directory when it is known (go run), else by package path from the
// working directory.
func buildNoop(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "noop")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/egress-guard/egress-guard/test/bench/noop")
	if _, file, _, ok := runtime.Caller(0); ok {
		if src := filepath.Join(filepath.Dir(file), "noop"); isDir(src) {
			cmd.Args[len(cmd.Args)-1] = "."
			cmd.Dir = src
		}
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the no-op server: %v\n%s", err, msg)
	}
	return out, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
