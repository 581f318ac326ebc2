// Package check is the offline form of the webhook: it runs the same engine
// over manifests, mutating then validating each object, as the API server
// would call the two webhooks.
package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one object read from a manifest.
type Document struct {
	// Source is file:index (1-based) for messages.
	Source    string
	JSON      []byte
	GVK       schema.GroupVersionKind
	Namespace string
	Name      string
	// UID is metadata.uid, for objects read from a cluster.
	UID string
}

// ReadPaths reads every document of the given files, and of the .yaml, .yml
// and .json files under the given directories, in order. Path "-" is stdin.
// Files are parsed in parallel; the documents keep their order.
func ReadPaths(paths []string, stdin io.Reader) ([]Document, error) {
	var sources []string
	for _, p := range paths {
		if p == "-" {
			sources = append(sources, p)
			continue
		}
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		sources = append(sources, files...)
	}
	read := make([][]Document, len(sources))
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, src := range sources {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			read[i], errs[i] = readSource(src, stdin)
		}()
	}
	wg.Wait()
	var docs []Document
	for i := range sources {
		if errs[i] != nil {
			return nil, errs[i]
		}
		docs = append(docs, read[i]...)
	}
	return docs, nil
}

// readSource reads the documents of a file, or of stdin for "-".
func readSource(src string, stdin io.Reader) ([]Document, error) {
	if src == "-" {
		return readStream("<stdin>", stdin)
	}
	fh, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return readStream(src, fh)
}

func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				files = append(files, path)
			}
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func readStream(name string, r io.Reader) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for i := 1; ; i++ {
		chunk, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(bytes.TrimSpace(stripComments(chunk))) == 0 {
			i--
			continue
		}
		src := fmt.Sprintf("%s:%d", name, i)
		js, err := yaml.YAMLToJSONStrict(chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: not valid YAML: %w", src, err)
		}
		// A List holds more objects.
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []json.RawMessage `json:"items"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			return nil, fmt.Errorf("%s: not an object: %w", src, err)
		}
		if head.Kind == "List" || strings.HasSuffix(head.Kind, "List") && head.Items != nil {
			for j, item := range head.Items {
				d, err := document(fmt.Sprintf("%s[%d]", src, j), item)
				if err != nil {
					return nil, err
				}
				docs = append(docs, d)
			}
			continue
		}
		d, err := document(src, js)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
}

func document(src string, js []byte) (Document, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   *struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
			UID       string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return Document{}, fmt.Errorf("%s: not an object: %w", src, err)
	}
	if head.APIVersion == "" || head.Kind == "" {
		return Document{}, fmt.Errorf("%s: apiVersion and kind are required", src)
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return Document{}, fmt.Errorf("%s: apiVersion %q: %w", src, head.APIVersion, err)
	}
	meta := head.Metadata
	if meta == nil {
		return Document{}, fmt.Errorf("%s: %s has no metadata", src, head.Kind)
	}
	if meta.Name == "" {
		return Document{}, fmt.Errorf("%s: %s: metadata.name is required", src, head.Kind)
	}
	if meta.Namespace == "" {
		// As kubectl does without -n.
		meta.Namespace = "default"
		if js, err = withNamespace(js, meta.Namespace); err != nil {
			return Document{}, err
		}
	}
	return Document{Source: src, JSON: js, GVK: gv.WithKind(head.Kind), Namespace: meta.Namespace, Name: meta.Name, UID: meta.UID}, nil
}

// withNamespace sets metadata.namespace in the object js.
func withNamespace(js []byte, namespace string) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(js, &obj); err != nil {
		return nil, err
	}
	obj["metadata"].(map[string]any)["namespace"] = namespace
	return json.Marshal(obj)
}

// NewDocument makes a Document of one object's JSON (read from a cluster,
// say), with the same checks as a file's.
func NewDocument(source string, js []byte) (Document, error) {
	return document(source, js)
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
