// Package certs provides the webhook server's serving certificate. A Source
// hands the TLS server its certificate (tls.Config.GetCertificate), keeps it
// current while Start runs, and reports through Healthy whether a valid
// certificate is loaded; serve gates /readyz on it.
//
// # Files
//
// Files reads tls.crt and tls.key from a directory, typically a Secret
// mounted by cert-manager or by hand. Missing files are not an error at
// start: the source waits for them (not ready meanwhile), then
// controller-runtime's certwatcher reloads them on change.
//
// # SelfManaged
//
// SelfManaged needs no cert-manager: the binary is its own CA.
//
// Every replica watches the one Secret (an informer restricted to its name)
// and serves the serving certificate in it from memory; the Secret is not
// mounted. One replica, elected through a Lease (controller-runtime's
// manager, leader election always on, the lease released on shutdown), also
// writes:
//
//   - the Secret, type kubernetes.io/tls, created when missing:
//     tls.crt and tls.key   the serving certificate and its key (ECDSA P-256)
//     ca.crt                the CA bundle: the signing CA first, then
//     earlier CAs until they expire
//     ca.key                the signing CA's key, so that the next leader
//     can renew (whoever reads the Secret can impersonate the webhook
//     either way: restrict access to it like any serving key)
//   - ca.crt into the caBundle of every webhook of the named
//     MutatingWebhookConfiguration and ValidatingWebhookConfiguration
//     (patched only when different, with optimistic locking and retries on
//     conflict; a configuration that does not exist yet is written when it
//     appears, and one reset by a deploy is written again).
//
// The CA and the serving certificate are renewed two thirds into their
// lifetimes. No request fails across a renewal:
//
//  1. a new CA is added to ca.crt (next to the old one) and ca.key;
//  2. the bundle with both CAs is written into the webhook configurations;
//  3. only then, after min(10s, serving validity / 10) for the API servers
//     to see the new bundle, a serving certificate signed by the new CA
//     replaces the old one in the Secret, and every replica swaps it in
//     memory. The old CA stays in the bundle until it expires, which is
//     never before a certificate it signed.
//
// A serving certificate renewed under the same CA needs no bundle change.
// The same order holds at the start: the Secret is created with the CA and
// empty tls.crt and tls.key (the API server warns that they hold no PEM
// data), the bundle is written, then the first serving certificate; no
// replica is ready before it, so a ready replica means a caBundle the API
// server can verify it with. Deleting the Secret starts over with a new CA
// (requests fail until the replicas load the new certificate).
//
// A name of the serving certificate that parses as an IP address becomes an
// IP SAN; the others are DNS SANs (a leading "*." is allowed).
//
// # RBAC for self-managed mode
//
//	core Secrets, in the Secret's namespace:
//	  get, list, watch, create, update
//	  (create cannot be limited by resourceNames; the others can be limited
//	  to the Secret's name)
//	coordination.k8s.io Leases, in the leader-election namespace:
//	  get, create, update
//	admissionregistration.k8s.io MutatingWebhookConfigurations and
//	ValidatingWebhookConfigurations, resourceNames the two names:
//	  get, list, watch, patch
//	core Events and events.k8s.io Events, in the Secret's and the
//	leader-election namespaces:
//	  create, patch
//	  (leader election records events through the core API, certificate
//	  issuance through events.k8s.io; both patch to count repeats)
//
// Granting patch on the Secret and update on the webhook configurations as
// well does no harm; they are not used.
//
// Lists and watches are restricted to the objects' names by a field
// selector on metadata.name, which Kubernetes authorizes against
// resourceNames.
package certs
