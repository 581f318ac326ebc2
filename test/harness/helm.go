package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// HelmTimeout bounds one helm run.
const HelmTimeout = 3 * time.Minute

// Helm runs the helm CLI, against the control plane when Kubeconfig is set.
// Its state (repositories, cache, plugins) lives under Dir, never in the
// user's home.
type Helm struct {
	Bin        string
	Kubeconfig string
	Dir        string
}

// Run runs helm with args.
func (h *Helm) Run(ctx context.Context, args ...string) Result {
	ctx, cancel := context.WithTimeout(ctx, HelmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(h.Dir, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.Dir, "config"),
		"HELM_DATA_HOME="+filepath.Join(h.Dir, "data"),
	)
	if h.Kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+h.Kubeconfig)
	}
	r := runCommand(ctx, cmd, args)
	r.Cmd = "helm"
	return r
}

// Objects are the documents of a multi-document YAML stream, such as the
// output of `helm template`, in order.
type Objects []*unstructured.Unstructured

// ParseObjects decodes a multi-document YAML stream, skipping empty
// documents.
func ParseObjects(data []byte) (Objects, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out Objects
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// Kind returns the objects of kind.
func (o Objects) Kind(kind string) Objects {
	var out Objects
	for _, obj := range o {
		if obj.GetKind() == kind {
			out = append(out, obj)
		}
	}
	return out
}

// Get returns the object of kind and name, or nil.
func (o Objects) Get(kind, name string) *unstructured.Unstructured {
	for _, obj := range o {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	return nil
}

// Refs lists the objects as "Kind namespace/name".
func (o Objects) Refs() []string {
	out := make([]string, 0, len(o))
	for _, obj := range o {
		out = append(out, fmt.Sprintf("%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName()))
	}
	return out
}
