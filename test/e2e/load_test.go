//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trust is the set of CAs a client trusts, swapped as it changes.
type trust struct {
	pool atomic.Pointer[x509.CertPool]
}

func newTrust(caPEM []byte) (*trust, error) {
	tr := &trust{}
	return tr, tr.set(caPEM)
}

func (tr *trust) set(caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no CA certificate in the bundle")
	}
	tr.pool.Store(pool)
	return nil
}

// loadGen posts AdmissionReviews to webhook servers from several workers,
// round-robin over the targets, each request on a new TLS connection
// verified against the trust in force at that moment (as the API server
// does after a caBundle change). It counts outcomes and the serving
// certificates it was shown.
type loadGen struct {
	targets []string // base URLs
	paths   []string // e.g. /mutate and /validate
	review  []byte
	trust   *trust

	ok, failed atomic.Int64
	next       atomic.Uint64

	mu      sync.Mutex
	errs    map[string]int    // failure messages
	serials map[string]string // serving certificate serial -> issuer
}

func newLoadGen(targets []string, review []byte, tr *trust) *loadGen {
	return &loadGen{
		targets: targets, paths: []string{"/mutate", "/validate"}, review: review, trust: tr,
		errs: map[string]int{}, serials: map[string]string{},
	}
}

// client verifies the server's certificate for 127.0.0.1 against the trust
// at handshake time; keep-alives are off so that every request shakes hands.
func (l *loadGen) client() *http.Client {
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: l.trust.pool.Load()}); err != nil {
			return fmt.Errorf("serving certificate %s (issuer %q): %w", leaf.SerialNumber.Text(16), leaf.Issuer.CommonName, err)
		}
		l.mu.Lock()
		l.serials[leaf.SerialNumber.Text(16)] = leaf.Issuer.CommonName
		l.mu.Unlock()
		return nil
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			// Verification is VerifyConnection's, against the current trust.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: verify, MinVersion: tls.VersionTLS12},
		},
	}
}

// run posts from workers goroutines until ctx ends.
func (l *loadGen) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := l.client()
			for ctx.Err() == nil {
				l.post(ctx, c)
			}
		}()
	}
	wg.Wait()
}

func (l *loadGen) post(ctx context.Context, c *http.Client) {
	n := l.next.Add(1)
	url := l.targets[n%uint64(len(l.targets))] + l.paths[(n/uint64(len(l.targets)))%uint64(len(l.paths))]
	err := postOnce(ctx, c, url, l.review)
	if ctx.Err() != nil {
		return // cut short by the end of the run, not a failure
	}
	if err == nil {
		l.ok.Add(1)
		return
	}
	l.failed.Add(1)
	l.mu.Lock()
	l.errs[err.Error()]++
	l.mu.Unlock()
}

func postOnce(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("POST %s: reading the response: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, data)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &review); err != nil || review.Response == nil {
		return fmt.Errorf("POST %s: not an AdmissionReview response (%v): %s", url, err, data)
	}
	return nil
}

// report fails t on any failed request and logs the counts.
func (l *loadGen) report(t *testing.T, took time.Duration) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load: %d requests in %s (%.0f/s), %d failed, %d serving certificates seen", l.ok.Load()+l.failed.Load(), took.Round(time.Millisecond),
		float64(l.ok.Load())/took.Seconds(), l.failed.Load(), len(l.serials))
	if l.failed.Load() > 0 {
		msgs := make([]string, 0, len(l.errs))
		for m, n := range l.errs {
			msgs = append(msgs, fmt.Sprintf("%dx %s", n, m))
		}
		sort.Strings(msgs)
		t.Errorf("%d of %d requests failed:\n%s", l.failed.Load(), l.ok.Load()+l.failed.Load(), indent(fmt.Sprint(msgs)))
	}
	if l.ok.Load() < 50 {
		t.Errorf("only %d requests succeeded: too few to show anything", l.ok.Load())
	}
}

// seen returns the serving certificate serials seen and their issuers.
func (l *loadGen) seen() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.serials))
	for k, v := range l.serials {
		out[k] = v
	}
	return out
}

// reviewBody is an AdmissionReview of req, as the API server posts it.
func reviewBody(t *testing.T, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}
