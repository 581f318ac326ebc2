package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// auditResult is the timing of `egress-guard audit` over generated files.
type auditResult struct {
	objects  int
	files    int
	elapsed  time.Duration
	findings int
}

func (r *auditResult) rate() float64 { return float64(r.objects) / r.elapsed.Seconds() }

// auditBench writes n objects of the request mix, under distinct names in 20
// namespaces, into files of 500 documents, and times the egress-guard binary
// auditing them (reading, evaluating, writing an HTML report).
func auditBench(ctx context.Context, bin, dir, cfgPath string, rs []*review, n int) (*auditResult, error) {
	files := filepath.Join(dir, "audit")
	if err := os.MkdirAll(files, 0o755); err != nil {
		return nil, err
	}
	res := &auditResult{objects: n}
	var buf bytes.Buffer
	flush := func() error {
		if buf.Len() == 0 {
			return nil
		}
		res.files++
		path := filepath.Join(files, fmt.Sprintf("objects-%03d.yaml", res.files))
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			return err
		}
		buf.Reset()
		return nil
	}
	p := newPicker(rs, 1)
	for i := range n {
		var obj map[string]any
		if err := json.Unmarshal(p.next().object, &obj); err != nil {
			return nil, err
		}
		meta, _ := obj["metadata"].(map[string]any)
		meta["name"] = fmt.Sprintf("%s-%05d", meta["name"], i)
		meta["namespace"] = fmt.Sprintf("team-%02d", i%20)
		delete(meta, "managedFields")
		doc, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		buf.WriteString("---\n")
		buf.Write(doc)
		if (i+1)%500 == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	report := filepath.Join(dir, "audit-report.html")
	cmd := exec.CommandContext(ctx, bin, "audit", "-f", files, "--config", cfgPath, "--report", report)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("egress-guard audit: %w\n%s", err, stderr.String())
	}
	res.elapsed = time.Since(start)
	// The summary line, then one line per finding.
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if want := fmt.Sprintf("%d objects: ", n); len(lines) == 0 || !strings.HasPrefix(lines[0], want) {
		return nil, fmt.Errorf("egress-guard audit did not report %d objects:\n%s", n, stdout.String())
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "fail ") || strings.HasPrefix(l, "warn ") {
			res.findings++
		}
	}
	if res.findings == 0 {
		return nil, fmt.Errorf("egress-guard audit found nothing in %d objects of a mix with denied and patched ones: %s", n, strings.TrimSpace(stderr.String()))
	}
	return res, nil
}
