package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

//go:embed default.yaml
var defaultYAML []byte

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Parse(defaultYAML)
	if err != nil {
		panic("embedded default config is invalid: " + err.Error())
	}
	return c
}

// LoadFile reads, defaults and validates the configuration in path.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes one YAML or JSON document strictly (unknown or duplicate fields
// are errors naming their path), applies defaults and validates the result.
func Parse(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if strings.TrimSpace(string(js)) == "null" {
		return nil, errors.New("empty document")
	}
	var c Config
	strict, err := kjson.UnmarshalStrict(js, &c, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decoding: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if len(strict) > 0 {
		errs := field.ErrorList{}
		for _, e := range strict {
			errs = append(errs, field.Invalid(nil, nil, strings.TrimPrefix(e.Error(), "json: ")))
		}
		return nil, aggregate(errs)
	}
	SetDefaults(&c)
	if errs := Validate(&c); len(errs) > 0 {
		return nil, aggregate(errs)
	}
	return &c, nil
}

func aggregate(errs field.ErrorList) error {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.Field == "" || e.Field == "<nil>" {
			msgs = append(msgs, e.Detail)
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

// SetDefaults fills the fields left empty.
func SetDefaults(c *Config) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	g := &c.Gateway
	if g.Namespace == "" {
		g.Namespace = "istio-system"
	}
	if g.Service == "" {
		g.Service = "istio-egressgateway"
	}
	if len(g.Selector) == 0 {
		g.Selector = map[string]string{"istio": "egressgateway"}
	}
	if g.Gateway == "" {
		g.Gateway = g.Namespace + "/" + g.Service
	}
	if g.Ports.HTTP == 0 {
		g.Ports.HTTP = 80
	}
	if g.Ports.TCP == 0 {
		g.Ports.TCP = 15443
	}
	if c.Enforcement == "" {
		c.Enforcement = ActionDeny
	}
	if c.Kinds == nil {
		c.Kinds = slices.Clone(DefaultKinds)
	}
	if c.ExemptNamespaces == nil {
		c.ExemptNamespaces = []string{"kube-system"}
	}
	p := &c.Platform
	if p.RootNamespace == "" {
		p.RootNamespace = "istio-system"
	}
	if p.Namespaces == nil {
		p.Namespaces = []string{p.RootNamespace}
		if g.Namespace != p.RootNamespace {
			p.Namespaces = append(p.Namespaces, g.Namespace)
		}
	}
	if p.Groups == nil {
		p.Groups = []string{"system:masters"}
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.Audit.ReportAPI == "" {
		c.Audit.ReportAPI = ReportAPIOpenReports
	}
	for i := range c.Allow {
		o := c.Allow[i].Origination
		if o != nil && o.SNI == "" && len(c.Allow[i].Hosts) == 1 && !strings.HasPrefix(c.Allow[i].Hosts[0], "*.") {
			o.SNI = c.Allow[i].Hosts[0]
		}
	}
}
