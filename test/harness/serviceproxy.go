package harness

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ServiceProxy stands in for kube-proxy between kube-apiserver and a webhook
// Service. There is no node network here, so the API server is started with
// an egress selector that sends its "cluster" connections (those to Services:
// webhooks with a service clientConfig) through this HTTP CONNECT proxy on a
// Unix socket. The API server resolves the Service to its ClusterIP and port,
// asks the proxy for a tunnel to that address, and does TLS through it with
// the Service's DNS name as server name, verified against the webhook's
// caBundle, as it would in a cluster. Route says where a ClusterIP:port
// leads (a process on 127.0.0.1); an address without a route is refused,
// as a Service without endpoints is.
type ServiceProxy struct {
	Socket string // the Unix socket the API server dials

	ln     net.Listener
	mu     sync.Mutex
	routes map[string]string
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// EgressSelectorConfig is the kube-apiserver --egress-selector-config-file
// that sends the "cluster" egress through an HTTP CONNECT proxy on socket;
// the other egress types stay direct.
func EgressSelectorConfig(socket string) []byte {
	return fmt.Appendf(nil, `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, socket)
}

// StartServiceProxy listens on the Unix socket path.
func StartServiceProxy(socket string) (*ServiceProxy, error) {
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("service proxy: %w", err)
	}
	p := &ServiceProxy{Socket: socket, ln: ln, routes: map[string]string{}, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Route sends tunnels to service (ClusterIP:port) to target (host:port).
func (p *ServiceProxy) Route(service, target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[service] = target
}

// Unroute removes the route of service.
func (p *ServiceProxy) Unroute(service string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.routes, service)
}

func (p *ServiceProxy) target(service string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.routes[service]
	return t, ok
}

// Close stops listening, ends the open tunnels and waits for them.
func (p *ServiceProxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// track adds conn to the open connections, or removes it.
func (p *ServiceProxy) track(conn net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.conns[conn] = true
	} else {
		delete(p.conns, conn)
	}
}

func (p *ServiceProxy) serve() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.tunnel(conn)
		}()
	}
}

// tunnel answers one CONNECT request and copies bytes both ways until
// either side closes.
func (p *ServiceProxy) tunnel(conn net.Conn) {
	p.track(conn, true)
	defer p.track(conn, false)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if req.Method != http.MethodConnect {
		fmt.Fprintf(conn, "HTTP/1.1 405 Method Not Allowed\r\n\r\nonly CONNECT\n")
		return
	}
	target, ok := p.target(req.Host)
	if !ok {
		fmt.Fprintf(conn, "HTTP/1.1 503 Service Unavailable\r\n\r\nno endpoints for %s\n", req.Host)
		return
	}
	upstream, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		fmt.Fprintf(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\n%v\n", err)
		return
	}
	p.track(upstream, true)
	defer p.track(upstream, false)
	defer upstream.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, br); upstream.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, upstream); conn.Close(); done <- struct{}{} }()
	<-done
	<-done
}
