package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Certificates is cert-manager's Certificate resource.
var Certificates = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// The Secret annotations cert-manager's issuing controller writes
// (github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1, types.go).
// cainjector reads the CA of a Certificate's Secret only when
// certificate-name names that Certificate.
const (
	CertificateNameAnnotation = "cert-manager.io/certificate-name"
	IssuerNameAnnotation      = "cert-manager.io/issuer-name"
	IssuerKindAnnotation      = "cert-manager.io/issuer-kind"
	IssuerGroupAnnotation     = "cert-manager.io/issuer-group"
	CommonNameAnnotation      = "cert-manager.io/common-name"
	AltNamesAnnotation        = "cert-manager.io/alt-names"
	InjectCAFromAnnotation    = "cert-manager.io/inject-ca-from"
)

// KeyPair is an issued certificate and its key.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte // SEC 1, as cert-manager writes ECDSA keys
	CAPEM   []byte // the issuing CA (the certificate itself when self-signed)
}

// IssueCertificate does what cert-manager's issuing controllers do for the
// Certificate namespace/name: it issues a certificate as the Certificate's
// spec asks (commonName, dnsNames, isCA) and stores it in the Secret named by
// spec.secretName (tls.crt, tls.key, ca.crt; kubernetes.io/tls) with the
// annotations cert-manager sets. ca signs it; nil means self-signed, as a
// SelfSigned Issuer does.
func (c *ControlPlane) IssueCertificate(ctx context.Context, namespace, name string, ca *KeyPair) (*KeyPair, error) {
	crt, err := c.Dynamic.Resource(Certificates).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading Certificate %s/%s: %w", namespace, name, err)
	}
	spec, err := readCertificateSpec(crt)
	if err != nil {
		return nil, fmt.Errorf("Certificate %s/%s: %w", namespace, name, err)
	}
	kp, err := spec.issue(ca)
	if err != nil {
		return nil, fmt.Errorf("Certificate %s/%s: %w", namespace, name, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      spec.secretName,
			Namespace: namespace,
			Labels:    map[string]string{"controller.cert-manager.io/fao": "true"},
			Annotations: map[string]string{
				CertificateNameAnnotation: name,
				IssuerNameAnnotation:      spec.issuerName,
				IssuerKindAnnotation:      spec.issuerKind,
				IssuerGroupAnnotation:     spec.issuerGroup,
				CommonNameAnnotation:      spec.commonName,
				AltNamesAnnotation:        strings.Join(spec.dnsNames, ","),
			},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       kp.CertPEM,
			corev1.TLSPrivateKeyKey: kp.KeyPEM,
			"ca.crt":                kp.CAPEM,
		},
	}
	if _, err := c.Client.CoreV1().Secrets(namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("storing Secret %s/%s of Certificate %s: %w", namespace, spec.secretName, name, err)
	}
	return kp, nil
}

// certificateSpec is the part of a Certificate's spec IssueCertificate
// honours.
type certificateSpec struct {
	secretName, commonName              string
	dnsNames                            []string
	isCA                                bool
	issuerName, issuerKind, issuerGroup string
}

func readCertificateSpec(crt *unstructured.Unstructured) (*certificateSpec, error) {
	s := &certificateSpec{}
	var err error
	str := func(fields ...string) string {
		v, _, e := unstructured.NestedString(crt.Object, fields...)
		err = errors.Join(err, e)
		return v
	}
	s.secretName = str("spec", "secretName")
	s.commonName = str("spec", "commonName")
	s.issuerName = str("spec", "issuerRef", "name")
	s.issuerKind = str("spec", "issuerRef", "kind")
	s.issuerGroup = str("spec", "issuerRef", "group")
	if err != nil {
		return nil, err
	}
	if s.dnsNames, _, err = unstructured.NestedStringSlice(crt.Object, "spec", "dnsNames"); err != nil {
		return nil, err
	}
	if s.isCA, _, err = unstructured.NestedBool(crt.Object, "spec", "isCA"); err != nil {
		return nil, err
	}
	if s.secretName == "" {
		return nil, errors.New("spec.secretName is empty")
	}
	return s, nil
}

// issue creates the key pair: a CA when the spec says isCA, else a serving
// certificate for the DNS names; signed by ca, or self-signed. It is valid
// for a day, whatever spec.duration says.
func (s *certificateSpec) issue(ca *KeyPair) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: s.commonName},
		DNSNames:     s.dnsNames,
	}
	if s.isCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	var parent *x509.Certificate
	var parentKey *ecdsa.PrivateKey
	if ca != nil {
		parent, parentKey = ca.Cert, ca.Key
	}
	cert, key, der, err := issue(tmpl, parent, parentKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	kp := &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	kp.CAPEM = kp.CertPEM
	if ca != nil {
		kp.CAPEM = ca.CertPEM
	}
	return kp, nil
}
