package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the self-managed Secret (type kubernetes.io/tls).
const (
	// CertKey holds the serving certificate.
	CertKey = corev1.TLSCertKey
	// PrivateKeyKey holds the serving certificate's private key.
	PrivateKeyKey = corev1.TLSPrivateKeyKey
	// CABundleKey holds the CAs clients trust (the caBundle): the signing
	// CA first, then earlier CAs until they expire.
	CABundleKey = "ca.crt"
	// CAPrivateKeyKey holds the signing CA's private key, so that whichever
	// replica leads next can issue and renew.
	CAPrivateKeyKey = "ca.key"
)

// MaxBundlePropagation bounds how long the writer waits, after a new CA is
// in every webhook's caBundle, before it issues a serving certificate the
// new CA signed: time for every API server to see the new bundle.
const MaxBundlePropagation = 10 * time.Second

// bundlePropagation is the wait for a serving certificate of the given
// validity: MaxBundlePropagation, or a tenth of the validity when shorter,
// so that a certificate due for renewal is replaced long before it expires.
func bundlePropagation(certValidity time.Duration) time.Duration {
	return min(MaxBundlePropagation, certValidity/10)
}

// secretState is the Secret's contents, parsed; what does not parse is
// left out.
type secretState struct {
	cas    []*x509.Certificate // ca.crt
	signer *KeyPair            // the CA of cas whose private key is ca.key
	leaf   *tls.Certificate    // tls.crt and tls.key, Leaf set
}

// parseSecretData reads the Secret's data. It never fails: problems say
// what was left out and why.
func parseSecretData(data map[string][]byte) (st secretState, problems []string) {
	if len(data[CABundleKey]) > 0 {
		cas, err := ParseCertificates(data[CABundleKey])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", CABundleKey, err))
		}
		st.cas = slices.DeleteFunc(cas, func(c *x509.Certificate) bool { return !c.IsCA })
	}
	if len(data[CAPrivateKeyKey]) > 0 {
		key, err := ParseKey(data[CAPrivateKeyKey])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", CAPrivateKeyKey, err))
		}
		for _, ca := range st.cas {
			if key != nil && key.PublicKey.Equal(ca.PublicKey) {
				st.signer = &KeyPair{Cert: ca, Key: key}
				break
			}
		}
		if key != nil && st.signer == nil {
			problems = append(problems, fmt.Sprintf("%s: the key belongs to no certificate of %s", CAPrivateKeyKey, CABundleKey))
		}
	}
	if len(data[CertKey]) > 0 || len(data[PrivateKeyKey]) > 0 {
		leaf, err := keyPairFromPEM(data[CertKey], data[PrivateKeyKey])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s and %s: %v", CertKey, PrivateKeyKey, err))
		}
		st.leaf = leaf
	}
	return st, problems
}

// policy is what the writer issues.
type policy struct {
	names        []string // serving certificate SANs
	certValidity time.Duration
	caValidity   time.Duration
	propagation  time.Duration // see bundlePropagation
}

// planCA says why the Secret needs a new signing CA at now, or "" when it
// does not.
func (p policy) planCA(st secretState, now time.Time) string {
	switch {
	case st.signer == nil && len(st.cas) == 0:
		return "there is no CA"
	case st.signer == nil:
		return "there is no usable CA private key"
	case validAt(st.signer.Cert, now) != nil:
		return validAt(st.signer.Cert, now).Error()
	case !now.Before(RenewAt(st.signer.Cert)):
		return fmt.Sprintf("CA %s is due for renewal since %s", describe(st.signer.Cert), RenewAt(st.signer.Cert).UTC().Format(time.RFC3339))
	}
	return ""
}

// leafPlan is what to do about the serving certificate.
type leafPlan struct {
	issue  bool
	reason string    // why it is issued, or why it waits
	at     time.Time // when to look again (without issue)
}

// planLeaf decides about the serving certificate at now. signer must be
// set; publishedAt is when the writer knew that signer was in every
// webhook's caBundle. A certificate the signer did not sign, one due for
// renewal or one with other SANs is replaced; while the current one is still
// valid and trusted the replacement waits until the signer's bundle has had
// time to reach every API server.
func (p policy) planLeaf(st secretState, now, publishedAt time.Time) leafPlan {
	var reason string
	var leaf *x509.Certificate
	if st.leaf != nil {
		leaf = st.leaf.Leaf
	}
	switch {
	case leaf == nil:
		reason = "there is no serving certificate"
	case validAt(leaf, now) != nil:
		reason = validAt(leaf, now).Error()
	case !signedBy(leaf, st.signer.Cert):
		reason = fmt.Sprintf("serving certificate %s is not signed by the current CA %s", describe(leaf), describe(st.signer.Cert))
	case !now.Before(RenewAt(leaf)):
		reason = fmt.Sprintf("serving certificate %s is due for renewal since %s", describe(leaf), RenewAt(leaf).UTC().Format(time.RFC3339))
	case !hasNames(leaf, p.names):
		reason = fmt.Sprintf("serving certificate %s is for %v, want %v", describe(leaf), sans(leaf), p.names)
	default:
		return leafPlan{at: RenewAt(leaf)}
	}
	if trusted(leaf, st.cas, now) {
		if ready := publishedAt.Add(p.propagation); now.Before(ready) {
			return leafPlan{reason: reason + "; waiting for the CA bundle to propagate", at: ready}
		}
	}
	return leafPlan{issue: true, reason: reason}
}

// trusted reports whether leaf is valid at now and signed by one of cas.
func trusted(leaf *x509.Certificate, cas []*x509.Certificate, now time.Time) bool {
	if leaf == nil || validAt(leaf, now) != nil {
		return false
	}
	return slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return signedBy(leaf, ca) })
}

// nextCheck is when the writer must look again, given the leaf plan: the
// earliest of the signer's renewal, the leaf's plan, and the expiry of an
// earlier CA that then leaves the bundle.
func nextCheck(st secretState, leaf leafPlan) time.Time {
	next := RenewAt(st.signer.Cert)
	if !leaf.at.IsZero() && leaf.at.Before(next) {
		next = leaf.at
	}
	for _, ca := range st.cas {
		if !ca.Equal(st.signer.Cert) && ca.NotAfter.Before(next) {
			next = ca.NotAfter
		}
	}
	return next
}

// sans lists a certificate's DNS and IP SANs.
func sans(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
