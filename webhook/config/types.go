// Package config holds the EgressGuardConfig schema: its types, defaults, strict
// loading and validation. The same schema is read by the CLI from a file and by
// the server from a mounted ConfigMap.
package config

import (
	"slices"
	"time"
)

// APIVersion and Kind identify an EgressGuardConfig document.
const (
	APIVersion = "egressguard.io/v1alpha1"
	Kind       = "EgressGuardConfig"
)

// Action is what happens to an object that breaks a rule.
type Action string

// The enforcement actions.
const (
	// ActionDeny rejects the object.
	ActionDeny Action = "deny"
	// ActionWarn admits the object with an admission warning.
	ActionWarn Action = "warn"
	// ActionDryRun admits the object silently and records the would-be decision.
	ActionDryRun Action = "dryrun"
)

// Actions lists the valid actions, in order of severity.
var Actions = []Action{ActionDeny, ActionWarn, ActionDryRun}

// TLSMode is the TLS mode the egress gateway originates upstream.
type TLSMode string

// The origination modes an allow entry may ask for.
const (
	TLSSimple TLSMode = "SIMPLE"
	TLSMutual TLSMode = "MUTUAL"
)

// Config is the EgressGuardConfig document.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Gateway says where egress leaves the mesh.
	Gateway Gateway `json:"gateway"`
	// Enforcement is the default action for a violation.
	Enforcement Action `json:"enforcement,omitempty"`
	// Overrides change the action for some rules and namespaces; the first
	// override that matches a violation decides its action.
	Overrides []Override `json:"overrides,omitempty"`
	// ExemptNamespaces are never evaluated. Absent means kube-system; an
	// explicit empty list exempts nothing. Istio's root namespace is not
	// exempt: one object there changes the whole mesh.
	ExemptNamespaces []string `json:"exemptNamespaces"`
	// Platform says who owns the mesh: who may write the settings only the
	// platform may write.
	Platform Platform `json:"platform,omitempty"`
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// Allow lists the external destinations; anything not listed is not allowed.
	Allow []AllowEntry `json:"allow,omitempty"`
	// Audit configures the audit serve runs in the cluster.
	Audit Audit `json:"audit,omitempty"`
	// Policies bound what the platform's own policies may do.
	Policies Policies `json:"policies,omitempty"`
	// Kinds are the kinds egress-guard polices: the webhooks receive them
	// (the chart registers them), check and the audit read them, and the
	// policies run on them. Absent means DefaultKinds.
	Kinds []PolicedKind `json:"kinds,omitempty"`
	// Workloads configures the policing of Pods and pod templates.
	Workloads Workloads `json:"workloads,omitempty"`
}

// Workloads configures the policing of workloads: Pods and the pod templates
// of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs,
// for settings that take traffic around the sidecar.
type Workloads struct {
	// Enabled polices WorkloadKinds (default true).
	Enabled *bool `json:"enabled,omitempty"`
}

// On says whether workloads are policed.
func (w Workloads) On() bool { return w.Enabled == nil || *w.Enabled }

// WorkloadKinds are the workload kinds policed when workloads are.
var WorkloadKinds = []PolicedKind{
	{Group: "", Version: "v1", Kind: "Pod", Resource: "pods"},
	{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet", Resource: "statefulsets"},
	{Group: "apps", Version: "v1", Kind: "DaemonSet", Resource: "daemonsets"},
	{Group: "apps", Version: "v1", Kind: "ReplicaSet", Resource: "replicasets"},
	{Group: "batch", Version: "v1", Kind: "Job", Resource: "jobs"},
	{Group: "batch", Version: "v1", Kind: "CronJob", Resource: "cronjobs"},
}

// IsWorkload says whether group/kind is a workload kind.
func IsWorkload(group, kind string) bool {
	return slices.ContainsFunc(WorkloadKinds, func(w PolicedKind) bool { return w.Group == group && w.Kind == kind })
}

// MeshNamespace says whether a namespace with these labels is in the mesh,
// as Istio's sidecar injector and ambient select them (and the chart's
// workload webhooks): istio-injection=enabled, an istio.io/rev revision
// without istio-injection, or istio.io/dataplane-mode=ambient.
func MeshNamespace(labels map[string]string) bool {
	injection, hasInjection := labels["istio-injection"]
	_, hasRev := labels["istio.io/rev"]
	return injection == "enabled" || (hasRev && !hasInjection) || (!hasInjection && !hasRev && labels["istio.io/dataplane-mode"] == "ambient")
}

// AllPoliced are the policed kinds: Kinds, and WorkloadKinds when workloads
// are policed.
func (c *Config) AllPoliced() []PolicedKind {
	return append(slices.Clip(c.Kinds), c.workloadKinds()...)
}

func (c *Config) workloadKinds() []PolicedKind {
	if c.Workloads.On() {
		return WorkloadKinds
	}
	return nil
}

// Platform names the platform team's namespaces and identities. Settings
// that change the mesh for everyone (an EnvoyFilter, a WasmPlugin, a
// ProxyConfig, a Sidecar that lets any outbound traffic out, routing in the
// root namespace exported to the mesh) are admitted in its namespaces or
// from its users and groups, and denied elsewhere.
type Platform struct {
	// RootNamespace is Istio's root namespace (meshConfig.rootNamespace;
	// default istio-system).
	RootNamespace string `json:"rootNamespace,omitempty"`
	// Namespaces the platform owns. Absent means the root namespace and the
	// gateway's namespace.
	Namespaces []string `json:"namespaces,omitempty"`
	// Users are request userInfo.username values of the platform, such as
	// system:serviceaccount:istio-system:istiod.
	Users []string `json:"users,omitempty"`
	// Groups are userInfo.groups values of the platform. Absent means
	// system:masters (cluster administrators, who can remove the webhook
	// anyway); an explicit empty list names none.
	Groups []string `json:"groups"`
}

// PolicedKind is a kind egress-guard polices. The embedded rule pack reads
// ServiceEntries, VirtualServices and DestinationRules, decoded into their
// Istio types; any other kind reaches the policies as its JSON.
type PolicedKind struct {
	// Group is the API group, such as networking.istio.io.
	Group string `json:"group"`
	// Version is the version the audit lists the kind at.
	Version string `json:"version"`
	// Kind is the kind's name, such as ServiceEntry.
	Kind string `json:"kind"`
	// Resource is the kind's plural resource name, such as serviceentries.
	Resource string `json:"resource"`
}

// DefaultKinds are the kinds policed when the configuration names none: those
// the embedded rule pack reads.
var DefaultKinds = []PolicedKind{
	{Group: "networking.istio.io", Version: "v1", Kind: "ServiceEntry", Resource: "serviceentries"},
	{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService", Resource: "virtualservices"},
	{Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule", Resource: "destinationrules"},
	{Group: "networking.istio.io", Version: "v1", Kind: "Sidecar", Resource: "sidecars"},
	{Group: "networking.istio.io", Version: "v1alpha3", Kind: "EnvoyFilter", Resource: "envoyfilters"},
	{Group: "extensions.istio.io", Version: "v1alpha1", Kind: "WasmPlugin", Resource: "wasmplugins"},
	{Group: "networking.istio.io", Version: "v1beta1", Kind: "ProxyConfig", Resource: "proxyconfigs"},
}

// ModelKind is a kind of the cluster model: the objects the rules read
// about the rest of the cluster (data.inventory.objects), which serve
// follows with --inventory, the audit lists, and check reads from its files.
type ModelKind struct {
	PolicedKind
	// GatewayNamespace: only the objects in the gateway's namespace are
	// modelled (and the chart grants access there alone).
	GatewayNamespace bool
}

// ModelKinds are the kinds of the cluster model: Istio's routing, the
// AuthorizationPolicies and the Secrets (names and keys, never values) of
// the gateway's namespace, and NetworkPolicies.
var ModelKinds = []ModelKind{
	{PolicedKind: DefaultKinds[0]},
	{PolicedKind: DefaultKinds[1]},
	{PolicedKind: DefaultKinds[2]},
	{PolicedKind: PolicedKind{Group: "networking.istio.io", Version: "v1", Kind: "Gateway", Resource: "gateways"}},
	{PolicedKind: DefaultKinds[3]},
	{PolicedKind: PolicedKind{Group: "security.istio.io", Version: "v1", Kind: "AuthorizationPolicy", Resource: "authorizationpolicies"}, GatewayNamespace: true},
	{PolicedKind: PolicedKind{Group: "", Version: "v1", Kind: "Secret", Resource: "secrets"}, GatewayNamespace: true},
	{PolicedKind: PolicedKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy", Resource: "networkpolicies"}},
}

// ModelKindOf returns the model kind of group and kind, if it is one.
func ModelKindOf(group, kind string) (ModelKind, bool) {
	for _, k := range ModelKinds {
		if k.Group == group && k.Kind == kind {
			return k, true
		}
	}
	return ModelKind{}, false
}

// Policed returns the policed kind of group and kind, if it is one.
func (c *Config) Policed(group, kind string) (PolicedKind, bool) {
	for _, list := range [2][]PolicedKind{c.Kinds, c.workloadKinds()} {
		for _, k := range list {
			if k.Group == group && k.Kind == kind {
				return k, true
			}
		}
	}
	return PolicedKind{}, false
}

// Policies bound what policies may reach when they run: by default no
// built-in that reaches the network or the host (RestrictedBuiltins).
type Policies struct {
	// AllowedBuiltins names restricted built-ins the policies may call.
	AllowedBuiltins []string `json:"allowedBuiltins,omitempty"`
	// AllowedHosts are the hosts http.send, net.lookup_ip_addr and JSON
	// schema references may reach (OPA's allow_net); absent means none.
	AllowedHosts []string `json:"allowedHosts,omitempty"`
}

// RestrictedBuiltins are OPA's built-ins that reach the network or the host,
// with what they reach. Policies run inside an admission webhook, on every
// write of the kinds it handles: they may call one only when the
// configuration names it in policies.allowedBuiltins.
var RestrictedBuiltins = map[string]string{
	"http.send":          "sends HTTP requests",
	"net.lookup_ip_addr": "resolves names with the host's DNS",
	"opa.runtime":        "reads the process's environment variables and OPA's configuration",
	// A schema's $ref may name a file (file:///...), read from the
	// webhook's file system whatever allow_net says, or a URL.
	"json.verify_schema": "loads schema references from the file system and URLs",
	"json.match_schema":  "loads schema references from the file system and URLs",
}

// Audit configures serve's periodic audit of the cluster's objects.
type Audit struct {
	// Interval between audits, a Go duration such as 30m; absent or 0 (the
	// default) runs none.
	Interval string `json:"interval,omitempty"`
	// ReportAPI is the report resource written: openreports (default) or
	// wgpolicyk8s.
	ReportAPI string `json:"reportAPI,omitempty"`
}

// Report APIs an audit writes.
const (
	ReportAPIOpenReports  = "openreports"
	ReportAPIPolicyReport = "wgpolicyk8s"
)

// Every is the audit interval (0: no audit). The configuration is validated
// at load, so a bad interval never reaches here.
func (a *Audit) Every() time.Duration {
	d, _ := time.ParseDuration(a.Interval)
	return d
}

// MinAuditInterval is the shortest audit interval accepted.
const MinAuditInterval = 5 * time.Second

// Override sets the action of the violations it matches: those of its rules
// (codes) in its namespaces. An absent list matches everything.
type Override struct {
	// Rules are rule codes, such as EGR202.
	Rules []string `json:"rules,omitempty"`
	// Namespaces are the namespaces of the objects.
	Namespaces []string `json:"namespaces,omitempty"`
	// Action replaces the rule's own action and the default enforcement.
	Action Action `json:"action"`
}

// Matches reports whether the override applies to rule code in namespace.
func (o *Override) Matches(code, namespace string) bool {
	return (len(o.Rules) == 0 || slices.Contains(o.Rules, code)) &&
		(len(o.Namespaces) == 0 || slices.Contains(o.Namespaces, namespace))
}

// ActionFor is the action of a violation of rule code in namespace: the first
// matching override's, else the one the rule set (own), else the default
// enforcement.
func (c *Config) ActionFor(code, namespace string, own Action) Action {
	for i := range c.Overrides {
		if c.Overrides[i].Matches(code, namespace) {
			return c.Overrides[i].Action
		}
	}
	if own != "" {
		return own
	}
	return c.Enforcement
}

// Gateway locates the egress gateway.
type Gateway struct {
	// Namespace of the gateway Service (default istio-system).
	Namespace string `json:"namespace,omitempty"`
	// Service is the gateway Service name (default istio-egressgateway).
	Service string `json:"service,omitempty"`
	// Selector is the gateway workload's labels (default istio: egressgateway).
	Selector map[string]string `json:"selector,omitempty"`
	// Gateway is the Istio Gateway resource, namespace/name, that gateway legs
	// bind to (default <namespace>/<service>).
	Gateway string `json:"gateway,omitempty"`
	// Ports are the gateway Service ports the mesh legs use.
	Ports GatewayPorts `json:"ports,omitempty"`
}

// GatewayPorts are the gateway's listener ports per protocol. TLS routes keep
// their own port (passthrough), so only HTTP and TCP are configurable.
type GatewayPorts struct {
	// HTTP is the port plain HTTP from the mesh enters the gateway on (default 80).
	HTTP uint32 `json:"http,omitempty"`
	// TCP is the port opaque TCP from the mesh enters the gateway on (default 15443).
	TCP uint32 `json:"tcp,omitempty"`
}

// AllowEntry allows a set of external hosts.
type AllowEntry struct {
	// Hosts are exact DNS names or a leading "*." wildcard.
	Hosts []string `json:"hosts"`
	// Ports restricts the allowed ports; absent means any port.
	Ports []uint32 `json:"ports,omitempty"`
	// Namespaces restricts the namespaces that may use the entry; absent means all.
	Namespaces []string `json:"namespaces,omitempty"`
	// ServiceAccounts restricts the source identities, as namespace/name.
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// Addresses are the IP addresses and CIDR ranges a MESH_EXTERNAL
	// ServiceEntry may give as endpoints of these hosts; absent means none
	// (an endpoint must then be a DNS name the allow list covers).
	Addresses []string `json:"addresses,omitempty"`
	// GatewaySubset is the subset of the gateway Service the mesh leg targets.
	GatewaySubset string `json:"gatewaySubset,omitempty"`
	// SNIForwarding says the platform forwards these hosts by SNI at the
	// egress gateway (a dynamic forward proxy it installed, as Istio's
	// wildcard egress example does): a ServiceEntry may then register a
	// wildcard host with resolution NONE (EGR105).
	SNIForwarding bool `json:"sniForwarding,omitempty"`
	// Origination makes the gateway originate TLS upstream.
	Origination *Origination `json:"origination,omitempty"`
}

// Origination is the TLS the gateway originates to the external host.
type Origination struct {
	Mode TLSMode `json:"mode"`
	// Port is the upstream port the gateway connects to.
	Port uint32 `json:"port"`
	// CredentialName is a Secret in the gateway namespace (required for MUTUAL).
	CredentialName string `json:"credentialName,omitempty"`
	// SNI sent upstream (default: the host, when it is not a wildcard).
	SNI string `json:"sni,omitempty"`
	// PrivateCA: the upstream's certificate is signed by a private CA, so
	// the credential must hold it too (ca.crt) for MUTUAL (SIMPLE always
	// needs one): checked against the cluster model (EGR607).
	PrivateCA bool `json:"privateCA,omitempty"`
}

// GatewayHost is the FQDN of the gateway Service.
func (c *Config) GatewayHost() string {
	return c.Gateway.Service + "." + c.Gateway.Namespace + ".svc." + c.ClusterDomain
}
