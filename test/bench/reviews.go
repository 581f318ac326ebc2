package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"sigs.k8s.io/yaml"
)

// benchConfig is the EgressGuardConfig both the server and the in-process
// evaluation use.
const benchConfig = `apiVersion: egressguard.io/v1alpha1
kind: EgressGuardConfig
gateway: {namespace: istio-system, service: istio-egressgateway, gateway: istio-system/egress-gateway}
enforcement: deny
exemptNamespaces: [kube-system, istio-system]
allow:
- hosts: ["test.com"]
  ports: [80, 443]
  origination: {mode: MUTUAL, port: 443, credentialName: test.client, sni: test.com}
- hosts: ["*.wikipedia.org"]
  ports: [443]
- hosts: ["mysql.fqdn.example"]
  ports: [3306, 13306]
`

// outcome is what egress-guard is expected to answer.
type outcome int

const (
	allowed outcome = iota
	denied
	patched
)

func (o outcome) String() string { return [...]string{"allowed", "denied", "patched"}[o] }

// review is one kind of request of the mix: a prepared AdmissionReview body
// whose uid is rewritten per request.
type review struct {
	name   string
	path   string // /mutate or /validate
	want   outcome
	weight int

	kind     string // Istio kind
	objName  string
	object   []byte // the object in Istio's JSON shape
	userInfo []byte
	body     []byte // the AdmissionReview
	uidAt    int    // offset of the uid in body
}

// uidTemplate has the length of a UUID; newBody writes a counter into it.
const uidTemplate = "00000000-0000-4000-8000-000000000000"

var uidCounter atomic.Uint64

// newBody returns a copy of the review's body with a fresh uid, and the uid.
func (r *review) newBody() ([]byte, string) {
	b := make([]byte, len(r.body))
	copy(b, r.body)
	n := uidCounter.Add(1)
	hex := strconv.FormatUint(n, 16)
	uid := b[r.uidAt : r.uidAt+len(uidTemplate)]
	copy(uid[len(uid)-len(hex):], hex)
	return b, string(uid)
}

// The objects of the mix, in the shape `kubectl get -o yaml` shows them. Each
// gets metadata (labels, annotations, managedFields) added by istioObject.
const (
	seAllowed = `
kind: ServiceEntry
metadata: {name: test-com}
spec:
  hosts: [test.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
`
	seDenied = `
kind: ServiceEntry
metadata: {name: evil-example-com}
spec:
  hosts: [evil.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: https, protocol: HTTPS}
`
	vsDirect = `
kind: VirtualService
metadata: {name: test-com}
spec:
  hosts: [test.com]
  http:
  - match:
    - port: 80
    route:
    - destination: {host: test.com, port: {number: 80}}
      weight: 100
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s}
`
	vsTwoLeg = `
kind: VirtualService
metadata: {name: egressgateway-vs}
spec:
  hosts: [test.com]
  gateways: [mesh, istio-system/egress-gateway]
  http:
  - match:
    - gateways: [mesh]
      port: 80
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 80}}
      weight: 100
  - match:
    - gateways: [istio-system/egress-gateway]
      port: 80
    route:
    - destination: {host: test.com, port: {number: 443}}
      weight: 100
`
	vsDenied = `
kind: VirtualService
metadata: {name: evil-example-com}
spec:
  hosts: [evil.example.com]
  http:
  - match:
    - port: 80
    route:
    - destination: {host: evil.example.com, port: {number: 80}}
`
	drPlain = `
kind: DestinationRule
metadata: {name: test-com}
spec:
  host: test.com
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 5s}
      http: {http1MaxPendingRequests: 64, idleTimeout: 60s}
    outlierDetection: {consecutive5xxErrors: 5, interval: 30s, baseEjectionTime: 60s}
`
	drMutual = `
kind: DestinationRule
metadata: {name: originate-mtls-for-test-com}
spec:
  host: test.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, credentialName: test.client, sni: test.com}
`
)

// A Pod as the ReplicaSet controller writes it once Istio's injector added
// its containers (the commonest write in a cluster), and one whose template
// excludes outbound ranges from the capture.
const (
	podInjected = `
kind: Pod
metadata:
  name: web-7c9f8d6b5-x2kqz
  annotations:
    sidecar.istio.io/status: '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}'
    prometheus.io/scrape: "true"
spec:
  serviceAccountName: web
  initContainers:
  - name: istio-init
    image: docker.io/istio/proxyv2:1.28.0
    args: [istio-iptables, -p, "15001", -z, "15006", -u, "1337", -m, REDIRECT, -i, "*", -x, "", -b, "*", -d, "15090,15021,15020"]
    securityContext:
      runAsUser: 0
      runAsGroup: 0
      runAsNonRoot: false
      capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}
  containers:
  - name: web
    image: registry.example/web:2.4.1
    ports: [{containerPort: 8080, name: http}]
    resources: {requests: {cpu: 100m, memory: 128Mi}}
    readinessProbe: {httpGet: {path: /app-health/web/readyz, port: 15020}}
  - name: istio-proxy
    image: docker.io/istio/proxyv2:1.28.0
    args: [proxy, sidecar, --domain, $(POD_NAMESPACE).svc.cluster.local, --proxyLogLevel=warning]
    ports: [{containerPort: 15090, name: http-envoy-prom}]
    securityContext:
      runAsUser: 1337
      runAsGroup: 1337
      runAsNonRoot: true
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
`
	podExcluded = `
kind: Pod
metadata:
  name: batch-5d8c7b9f4-q7wrt
  annotations:
    traffic.sidecar.istio.io/excludeOutboundIPRanges: 0.0.0.0/0
spec:
  containers:
  - name: batch
    image: registry.example/batch:1.0
`
)

// mix returns the request mix: 40% allowed, 30% denied, 30% patched, then
// Pods: 15 allowed, 5 denied.
func mix() ([]*review, error) {
	rs := []*review{
		{name: "SE allowed", path: "/validate", want: allowed, weight: 10, object: []byte(seAllowed)},
		{name: "VS two-leg validate", path: "/validate", want: allowed, weight: 10, object: []byte(vsTwoLeg)},
		{name: "VS two-leg mutate", path: "/mutate", want: allowed, weight: 10, object: []byte(vsTwoLeg)},
		{name: "DR mutual", path: "/validate", want: allowed, weight: 10, object: []byte(drMutual)},
		{name: "SE denied", path: "/validate", want: denied, weight: 15, object: []byte(seDenied)},
		{name: "VS denied", path: "/validate", want: denied, weight: 15, object: []byte(vsDenied)},
		{name: "VS direct", path: "/mutate", want: patched, weight: 15, object: []byte(vsDirect)},
		{name: "DR no tls", path: "/mutate", want: patched, weight: 15, object: []byte(drPlain)},
		{name: "Pod injected", path: "/validate", want: allowed, weight: 15, object: []byte(podInjected)},
		{name: "Pod excluded", path: "/validate", want: denied, weight: 5, object: []byte(podExcluded)},
	}
	for _, r := range rs {
		if err := r.build(); err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
	}
	return rs, nil
}

// resources maps a kind to its API group, version and resource.
var resources = map[string][3]string{
	"ServiceEntry":    {"networking.istio.io", "v1", "serviceentries"},
	"VirtualService":  {"networking.istio.io", "v1", "virtualservices"},
	"DestinationRule": {"networking.istio.io", "v1", "destinationrules"},
	"Pod":             {"", "v1", "pods"},
}

// build completes r.object into a full Istio object and wraps it in an
// AdmissionReview as the API server sends it.
func (r *review) build() error {
	var obj map[string]any
	if err := yaml.Unmarshal(r.object, &obj); err != nil {
		return err
	}
	r.kind, _ = obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	r.objName = name
	gvr, ok := resources[r.kind]
	if !ok {
		return fmt.Errorf("kind %q is not in the mix's resources", r.kind)
	}
	apiVersion := gvr[1]
	if gvr[0] != "" {
		apiVersion = gvr[0] + "/" + gvr[1]
	}
	obj["apiVersion"] = apiVersion
	spec, err := json.Marshal(obj["spec"])
	if err != nil {
		return err
	}
	lastApplied, err := json.Marshal(map[string]any{
		"apiVersion": apiVersion, "kind": r.kind,
		"metadata": map[string]any{"name": name, "namespace": "default", "labels": labels(name)},
		"spec":     json.RawMessage(spec),
	})
	if err != nil {
		return err
	}
	annotations := map[string]any{
		"kubectl.kubernetes.io/last-applied-configuration": string(lastApplied) + "\n",
		"argocd.argoproj.io/tracking-id":                   "egress:" + apiVersion + "/" + r.kind + ":default/" + name,
	}
	if own, ok := meta["annotations"].(map[string]any); ok {
		maps.Copy(annotations, own)
	}
	obj["metadata"] = map[string]any{
		"name":        name,
		"namespace":   "default",
		"generation":  1,
		"labels":      labels(name),
		"annotations": annotations,
		"managedFields": []any{map[string]any{
			"apiVersion": apiVersion,
			"fieldsType": "FieldsV1",
			"fieldsV1": map[string]any{
				"f:metadata": map[string]any{
					"f:annotations": map[string]any{".": map[string]any{}, "f:argocd.argoproj.io/tracking-id": map[string]any{}, "f:kubectl.kubernetes.io/last-applied-configuration": map[string]any{}},
					"f:labels":      map[string]any{".": map[string]any{}, "f:app.kubernetes.io/instance": map[string]any{}, "f:app.kubernetes.io/name": map[string]any{}, "f:team": map[string]any{}},
				},
				"f:spec": map[string]any{},
			},
			"manager":   "argocd-controller",
			"operation": "Update",
			"time":      "2026-01-12T09:30:00Z",
		}},
	}
	r.object, err = json.Marshal(obj)
	if err != nil {
		return err
	}
	r.userInfo, err = json.Marshal(map[string]any{
		"username": "system:serviceaccount:argocd:argocd-application-controller",
		"uid":      "6b1f3c2e-9a4d-4f7e-8c21-3d5e7a9b0c11",
		"groups":   []string{"system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"},
		"extra":    map[string]any{"authentication.kubernetes.io/pod-name": []string{"argocd-application-controller-0"}},
	})
	if err != nil {
		return err
	}
	kind := map[string]any{"group": gvr[0], "version": gvr[1], "kind": r.kind}
	resource := map[string]any{"group": gvr[0], "version": gvr[1], "resource": gvr[2]}
	ar := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":             uidTemplate,
			"kind":            kind,
			"resource":        resource,
			"requestKind":     kind,
			"requestResource": resource,
			"name":            name,
			"namespace":       "default",
			"operation":       "CREATE",
			"userInfo":        json.RawMessage(r.userInfo),
			"object":          json.RawMessage(r.object),
			"oldObject":       nil,
			"dryRun":          false,
			"options":         map[string]any{"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "argocd-controller"},
		},
	}
	r.body, err = json.Marshal(ar)
	if err != nil {
		return err
	}
	r.uidAt = strings.Index(string(r.body), uidTemplate)
	if r.uidAt < 0 {
		return fmt.Errorf("uid not found in the AdmissionReview")
	}
	return nil
}

func labels(name string) map[string]any {
	return map[string]any{"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "egress", "team": "payments"}
}

// only keeps the reviews whose name starts with prefix ("": all).
func only(rs []*review, prefix string) ([]*review, error) {
	kept := slices.DeleteFunc(slices.Clone(rs), func(r *review) bool { return !strings.HasPrefix(r.name, prefix) })
	if len(kept) == 0 {
		return nil, fmt.Errorf("-only %q: no review of the mix is named so", prefix)
	}
	return kept, nil
}

// picker draws reviews from the mix by weight.
type picker struct {
	table []*review
	rng   *rand.Rand
}

func newPicker(rs []*review, seed uint64) *picker {
	p := &picker{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	for _, r := range rs {
		for range r.weight {
			p.table = append(p.table, r)
		}
	}
	return p
}

func (p *picker) next() *review { return p.table[p.rng.IntN(len(p.table))] }

// admissionResponse is the part of an AdmissionReview response checked.
type admissionResponse struct {
	Response *struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Patch   []byte `json:"patch"`
		Status  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// verify compares a response body with the expected outcome; it returns a
// description of the difference, or "" when it matches.
func verify(body []byte, uid string, want outcome) string {
	var ar admissionResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		return "undecodable response: " + err.Error()
	}
	r := ar.Response
	if r == nil {
		return "no response in the AdmissionReview"
	}
	if r.UID != uid {
		return fmt.Sprintf("uid %q, want %q", r.UID, uid)
	}
	got := allowed
	switch {
	case !r.Allowed:
		got = denied
	case len(r.Patch) > 0:
		got = patched
	}
	if got == want {
		return ""
	}
	msg := fmt.Sprintf("got %s, want %s", got, want)
	if r.Status != nil && r.Status.Message != "" {
		m := r.Status.Message
		if len(m) > 160 {
			m = m[:160] + "..."
		}
		msg += fmt.Sprintf(" (status %d: %s)", r.Status.Code, m)
	}
	return msg
}
