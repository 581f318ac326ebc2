package config

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks a defaulted configuration and returns every problem found,
// each naming its field path and value.
func Validate(c *Config) field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{APIVersion}))
	}
	if c.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{Kind}))
	}
	errs = append(errs, validateGateway(&c.Gateway, field.NewPath("gateway"))...)
	if !slices.Contains(Actions, c.Enforcement) {
		errs = append(errs, field.NotSupported(field.NewPath("enforcement"), c.Enforcement, Actions))
	}
	for i := range c.Overrides {
		errs = append(errs, validateOverride(&c.Overrides[i], field.NewPath("overrides").Index(i))...)
	}
	for i, ns := range c.ExemptNamespaces {
		errs = append(errs, dnsLabel(field.NewPath("exemptNamespaces").Index(i), ns)...)
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.ClusterDomain) {
		errs = append(errs, field.Invalid(field.NewPath("clusterDomain"), c.ClusterDomain, msg))
	}
	for i := range c.Allow {
		errs = append(errs, validateAllow(&c.Allow[i], field.NewPath("allow").Index(i))...)
	}
	errs = append(errs, validateAudit(&c.Audit, field.NewPath("audit"))...)
	errs = append(errs, validatePolicies(&c.Policies, field.NewPath("policies"))...)
	errs = append(errs, validateKinds(c.Kinds, field.NewPath("kinds"))...)
	errs = append(errs, validatePlatform(&c.Platform, field.NewPath("platform"))...)
	return errs
}

// validatePlatform checks the platform's namespaces and identities: names
// the API server could give, each once.
func validatePlatform(pl *Platform, p *field.Path) field.ErrorList {
	errs := dnsLabel(p.Child("rootNamespace"), pl.RootNamespace)
	for _, list := range []struct {
		name   string
		values []string
		ns     bool
	}{{"namespaces", pl.Namespaces, true}, {"users", pl.Users, false}, {"groups", pl.Groups, false}} {
		seen := map[string]bool{}
		for i, v := range list.values {
			vp := p.Child(list.name).Index(i)
			switch {
			case list.ns:
				errs = append(errs, dnsLabel(vp, v)...)
			case strings.TrimSpace(v) == "" || strings.TrimSpace(v) != v:
				errs = append(errs, field.Invalid(vp, v, "must be a name as the API server gives it, without surrounding spaces"))
			}
			if seen[v] {
				errs = append(errs, field.Duplicate(vp, v))
			}
			seen[v] = true
		}
	}
	return errs
}

var (
	kindName    = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	versionName = regexp.MustCompile(`^v[0-9]+((alpha|beta)[0-9]+)?$`)
)

// validateKinds checks the policed kinds: each named in full, once. Core
// kinds (the empty group) are not policed.
func validateKinds(kinds []PolicedKind, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(kinds) == 0 {
		errs = append(errs, field.Required(p, "at least one kind (absent: the kinds the embedded rules read)"))
	}
	seen := map[string]bool{}
	for i, k := range kinds {
		kp := p.Index(i)
		if k.Group == "" {
			errs = append(errs, field.Required(kp.Child("group"), "an API group (core kinds are not policed)"))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(k.Group) {
				errs = append(errs, field.Invalid(kp.Child("group"), k.Group, msg))
			}
		}
		if !versionName.MatchString(k.Version) {
			errs = append(errs, field.Invalid(kp.Child("version"), k.Version, "must be an API version such as v1, v1beta1 or v1alpha3"))
		}
		if !kindName.MatchString(k.Kind) {
			errs = append(errs, field.Invalid(kp.Child("kind"), k.Kind, "must be a kind such as ServiceEntry"))
		}
		errs = append(errs, dnsLabel(kp.Child("resource"), k.Resource)...)
		if IsWorkload(k.Group, k.Kind) {
			errs = append(errs, field.Invalid(kp, k.Group+"/"+k.Kind, "a workload kind: policed through workloads.enabled"))
		}
		if id := k.Group + "/" + k.Kind; seen[id] {
			errs = append(errs, field.Duplicate(kp, id))
		} else {
			seen[id] = true
		}
	}
	return errs
}

func validatePolicies(p *Policies, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	restricted := slices.Sorted(maps.Keys(RestrictedBuiltins))
	for i, name := range p.AllowedBuiltins {
		fp := path.Child("allowedBuiltins").Index(i)
		switch {
		case seen[name]:
			errs = append(errs, field.Duplicate(fp, name))
		case RestrictedBuiltins[name] == "":
			errs = append(errs, field.NotSupported(fp, name, restricted))
		}
		seen[name] = true
	}
	hosts := map[string]bool{}
	for i, h := range p.AllowedHosts {
		fp := path.Child("allowedHosts").Index(i)
		if hosts[h] {
			errs = append(errs, field.Duplicate(fp, h))
		}
		hosts[h] = true
		if _, err := netip.ParseAddr(h); err == nil {
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(h) {
			errs = append(errs, field.Invalid(fp, h, "must be a host name or an IP address: "+msg))
		}
	}
	if slices.Contains(p.AllowedBuiltins, "http.send") && len(p.AllowedHosts) == 0 {
		errs = append(errs, field.Required(path.Child("allowedHosts"), "http.send is allowed: list the hosts it may reach"))
	}
	return errs
}

func validateAudit(a *Audit, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if a.Interval != "" {
		d, err := time.ParseDuration(a.Interval)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(p.Child("interval"), a.Interval, "must be a duration such as 30m"))
		case d != 0 && d < MinAuditInterval:
			errs = append(errs, field.Invalid(p.Child("interval"), a.Interval, fmt.Sprintf("must be 0 (no audit) or at least %s", MinAuditInterval)))
		}
	}
	if apis := []string{ReportAPIOpenReports, ReportAPIPolicyReport}; !slices.Contains(apis, a.ReportAPI) {
		errs = append(errs, field.NotSupported(p.Child("reportAPI"), a.ReportAPI, apis))
	}
	return errs
}

// ruleCode is the shape of a rule code: letters then digits, like EGR202.
var ruleCode = regexp.MustCompile(`^[A-Z][A-Z0-9]*[0-9]+$`)

func validateOverride(o *Override, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(o.Rules) == 0 && len(o.Namespaces) == 0 {
		errs = append(errs, field.Required(p, "rules or namespaces (the default action is set by enforcement)"))
	}
	seen := map[string]bool{}
	for i, code := range o.Rules {
		rp := p.Child("rules").Index(i)
		if !ruleCode.MatchString(code) {
			errs = append(errs, field.Invalid(rp, code, "must be a rule code: capital letters then digits, like EGR202"))
		}
		if seen[code] {
			errs = append(errs, field.Duplicate(rp, code))
		}
		seen[code] = true
	}
	for i, ns := range o.Namespaces {
		errs = append(errs, dnsLabel(p.Child("namespaces").Index(i), ns)...)
	}
	if !slices.Contains(Actions, o.Action) {
		errs = append(errs, field.NotSupported(p.Child("action"), o.Action, Actions))
	}
	return errs
}

func validateGateway(g *Gateway, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, dnsLabel(p.Child("namespace"), g.Namespace)...)
	errs = append(errs, dnsLabel(p.Child("service"), g.Service)...)
	for k, v := range g.Selector {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Child("selector").Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(p.Child("selector").Key(k), v, msg))
		}
	}
	if ns, name, ok := strings.Cut(g.Gateway, "/"); !ok {
		errs = append(errs, field.Invalid(p.Child("gateway"), g.Gateway, "must be namespace/name"))
	} else {
		errs = append(errs, dnsLabel(p.Child("gateway"), ns)...)
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(p.Child("gateway"), g.Gateway, msg))
		}
	}
	errs = append(errs, port(p.Child("ports", "http"), g.Ports.HTTP)...)
	errs = append(errs, port(p.Child("ports", "tcp"), g.Ports.TCP)...)
	return errs
}

func validateAllow(a *AllowEntry, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(a.Hosts) == 0 {
		errs = append(errs, field.Required(p.Child("hosts"), "at least one host"))
	}
	errs = append(errs, uniqueValid(p.Child("hosts"), a.Hosts, HostPattern)...)
	for i, n := range a.Ports {
		errs = append(errs, port(p.Child("ports").Index(i), n)...)
	}
	for i, ns := range a.Namespaces {
		errs = append(errs, dnsLabel(p.Child("namespaces").Index(i), ns)...)
	}
	for i, sa := range a.ServiceAccounts {
		sp := p.Child("serviceAccounts").Index(i)
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, field.Invalid(sp, sa, "must be namespace/name of a ServiceAccount"))
		}
	}
	errs = append(errs, uniqueValid(p.Child("addresses"), a.Addresses, address)...)
	if a.GatewaySubset != "" {
		for _, msg := range validation.IsDNS1123Label(a.GatewaySubset) {
			errs = append(errs, field.Invalid(p.Child("gatewaySubset"), a.GatewaySubset, msg))
		}
	}
	if o := a.Origination; o != nil {
		op := p.Child("origination")
		switch o.Mode {
		case TLSSimple, TLSMutual:
		case "":
			errs = append(errs, field.Required(op.Child("mode"), "SIMPLE or MUTUAL"))
		default:
			errs = append(errs, field.NotSupported(op.Child("mode"), o.Mode, []TLSMode{TLSSimple, TLSMutual}))
		}
		if o.Port == 0 {
			errs = append(errs, field.Required(op.Child("port"), "the upstream port the gateway connects to"))
		} else {
			errs = append(errs, port(op.Child("port"), o.Port)...)
			if len(a.Ports) > 0 && !slices.Contains(a.Ports, o.Port) {
				errs = append(errs, field.Invalid(op.Child("port"), o.Port, fmt.Sprintf("must be one of the entry's ports %v", a.Ports)))
			}
		}
		if o.Mode == TLSMutual && o.CredentialName == "" {
			errs = append(errs, field.Required(op.Child("credentialName"), "MUTUAL origination needs a Secret in the gateway namespace"))
		}
		if o.CredentialName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(o.CredentialName) {
				errs = append(errs, field.Invalid(op.Child("credentialName"), o.CredentialName, msg))
			}
		}
		if o.SNI != "" {
			for _, msg := range validation.IsDNS1123Subdomain(o.SNI) {
				errs = append(errs, field.Invalid(op.Child("sni"), o.SNI, msg))
			}
		}
	}
	return errs
}

// uniqueValid checks each value with problem (which returns why a value is
// invalid, or "") and that no value appears twice.
func uniqueValid(p *field.Path, values []string, problem func(string) string) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, v := range values {
		if msg := problem(v); msg != "" {
			errs = append(errs, field.Invalid(p.Index(i), v, msg))
		}
		if seen[v] {
			errs = append(errs, field.Duplicate(p.Index(i), v))
		}
		seen[v] = true
	}
	return errs
}

// address returns why a is not an IP address or a CIDR range, or "".
func address(a string) string {
	if !strings.Contains(a, "/") {
		if ip, err := netip.ParseAddr(a); err != nil || ip.Zone() != "" {
			return "must be an IP address or a CIDR range such as 203.0.113.0/24"
		}
		return ""
	}
	prefix, err := netip.ParsePrefix(a)
	if err != nil {
		return "must be an IP address or a CIDR range such as 203.0.113.0/24"
	}
	if prefix.Masked() != prefix {
		return fmt.Sprintf("the bits after the prefix length must be zero (%s)", prefix.Masked())
	}
	return ""
}

// HostPattern returns why h is not an exact DNS name or a "*." wildcard, or "".
func HostPattern(h string) string {
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return `only a single leading "*." wildcard is allowed`
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return strings.Join(msgs, ", ")
	}
	if !strings.Contains(name, ".") && name != h {
		return "a wildcard must cover a domain, not a top-level label"
	}
	return ""
}

func port(p *field.Path, n uint32) field.ErrorList {
	if n < 1 || n > 65535 {
		return field.ErrorList{field.Invalid(p, n, "must be a port between 1 and 65535")}
	}
	return nil
}

func dnsLabel(p *field.Path, v string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}
