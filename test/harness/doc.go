// Package harness runs egress-guard against a real, local control plane. It
// is shared by the end-to-end tests (test/e2e) and the demo (test/demo).
//
// The pieces, in the order they are used:
//
//	StartControlPlane   kube-apiserver and etcd from $KUBEBUILDER_ASSETS
//	                    (controller-runtime's envtest) with Istio's CRDs
//	                    from the istio.io/api module, an admin kubeconfig
//	                    and a kubectl runner (ControlPlane.Kubectl)
//	WriteServingCerts   a fresh CA and a serving certificate for 127.0.0.1
//	InstallWebhooks     a MutatingWebhookConfiguration and a
//	                    ValidatingWebhookConfiguration with a url
//	                    clientConfig and the CA bundle; Webhooks.Point moves
//	                    them to another server and waits until the API
//	                    server calls it
//	StartGuard          an `egress-guard serve` process with its output in
//	                    a log file, ready when /readyz answers (over TLS
//	                    with the harness CA, or on the plain-HTTP health
//	                    port when the process makes its own certificates)
//	Certs.Renew         a new serving certificate over the files, for
//	                    rotation tests
//	LoadScenario        a directory of test/scenarios, one Doc per object
//
// and for the Helm chart's tests (test/chart):
//
//	CertManagerCRDs,    CRDs from the cert-manager and Prometheus Operator
//	ServiceMonitorCRD   modules the tools modules pin, for
//	                    ControlPlaneOptions.CRDPaths
//	ServiceProxy        kube-proxy's part between kube-apiserver and a
//	                    Service, through the API server's egress selector
//	                    (ControlPlaneOptions.APIServerFlags)
//	Helm                the helm CLI against the control plane;
//	                    ParseObjects reads what it renders
//	WaitCertificate     a cert-manager Certificate Ready, and its Secret
//	StartProcess        another program beside the control plane (cert-manager's controllers)
//
// Everything returns errors with context; nothing here depends on package
// testing. Whatever is started has a Stop method, and StartControlPlane
// stops what it started when it fails half way.
package harness
