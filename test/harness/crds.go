package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ModuleDir returns the directory of module in the module cache, at the
// version the Go module in dir requires, downloading it when it is not
// there yet (`go mod download`; `make tools` has done so).
func ModuleDir(dir, module string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &info); err == nil && jsonErr != nil {
		err = jsonErr
	}
	if err == nil && info.Error != "" {
		err = errors.New(info.Error)
	}
	if err == nil && info.Dir == "" {
		err = errors.New("no module directory")
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s in %s: %w: %s", module, dir, err, strings.TrimSpace(stderr.String()))
	}
	return info.Dir, nil
}

// CertManagerCRDs writes cert-manager's CRDs, from deploy/crds of the
// github.com/cert-manager/cert-manager module that test/tools/cert-manager
// requires, into out and returns out. Those files are the sources of
// cert-manager's Helm chart: plain CRDs but for Helm template expressions in
// comments and in metadata.labels, so the labels are dropped.
func CertManagerCRDs(root, out string) (string, error) {
	mod, err := ModuleDir(filepath.Join(root, "test", "tools", "cert-manager"), "github.com/cert-manager/cert-manager")
	if err != nil {
		return "", err
	}
	files, err := filepath.Glob(filepath.Join(mod, "deploy", "crds", "crd-*.yaml"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("no CRDs in %s/deploy/crds", mod)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", err
	}
	for _, f := range files {
		if err := untemplateCRD(f, filepath.Join(out, filepath.Base(f))); err != nil {
			return "", err
		}
	}
	return out, nil
}

// untemplateCRD copies the CRD in src to dst without its labels and
// annotations, the only fields holding template expressions.
func untemplateCRD(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if obj.GetKind() != "CustomResourceDefinition" {
		return fmt.Errorf("%s: kind %q, want CustomResourceDefinition", src, obj.GetKind())
	}
	obj.SetLabels(nil)
	obj.SetAnnotations(nil)
	js, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	if bytes.Contains(js, []byte("{{")) {
		return fmt.Errorf("%s: template expressions left outside labels and annotations", src)
	}
	return os.WriteFile(dst, js, 0o600)
}

// ServiceMonitorCRD returns the path of the Prometheus Operator's
// ServiceMonitor CRD, from the module test/tools/prometheus-operator
// requires.
func ServiceMonitorCRD(root string) (string, error) {
	mod, err := ModuleDir(filepath.Join(root, "test", "tools", "prometheus-operator"), "github.com/prometheus-operator/prometheus-operator")
	if err != nil {
		return "", err
	}
	path := filepath.Join(mod, "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("ServiceMonitor CRD: %w", err)
	}
	return path, nil
}
