package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// Holder keeps the engine in force and swaps it atomically when the
// configuration or policy files change. A reload that fails keeps the last
// good engine and says why (log and metric).
type Holder struct {
	configFile string
	policyDirs []string
	log        logr.Logger
	metrics    *metrics.Metrics

	current atomic.Pointer[engine.Engine]
	digest  [32]byte

	// mu orders the engine builds of file reloads and inventory updates, so
	// that an older build never replaces a newer one.
	mu sync.Mutex
	// inventory is the cluster's, as last given to Refresh.
	inventory engine.Inventory
	// inventoryReady is set by the first Refresh.
	inventoryReady atomic.Bool
}

// Get returns the engine in force.
func (h *Holder) Get() *engine.Engine { return h.current.Load() }

// Checker is ready once an engine is loaded.
func (h *Holder) Checker() healthz.Checker {
	return func(*http.Request) error {
		if h.current.Load() == nil {
			return errors.New("policies not loaded")
		}
		return nil
	}
}

// InventoryChecker is ready once an engine holds the cluster's inventory.
func (h *Holder) InventoryChecker() healthz.Checker {
	return func(*http.Request) error {
		if !h.inventoryReady.Load() {
			return errors.New("ServiceEntries not synced yet")
		}
		return nil
	}
}

// Refresh puts in force an engine with the configuration and policies in
// force and the cluster's inventory inv.
func (h *Holder) Refresh(ctx context.Context, inv engine.Inventory) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.current.Load()
	if cur == nil {
		return errors.New("no configuration loaded")
	}
	e, err := engine.New(ctx, engine.Options{Config: cur.Config(), PolicyDirs: h.policyDirs, Inventory: inv})
	if err != nil {
		h.metrics.InventoryUpdate(0, false)
		return err
	}
	h.inventory = inv
	h.current.Store(e)
	h.metrics.InventoryUpdate(len(inv.ServiceEntries), true)
	h.inventoryReady.Store(true)
	return nil
}

// Load builds an engine from the files and puts it in force.
func (h *Holder) Load(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	digest, err := h.sum()
	if err != nil {
		return err
	}
	// What was tried, good or bad: a broken file is reported once, not on
	// every tick, and tried again when it changes.
	h.digest = digest
	cfg := config.Default()
	if h.configFile != "" {
		if cfg, err = config.LoadFile(h.configFile); err != nil {
			return err
		}
	}
	e, err := engine.New(ctx, engine.Options{Config: cfg, PolicyDirs: h.policyDirs, Inventory: h.inventory})
	if err != nil {
		return err
	}
	for _, f := range e.Fallbacks() {
		h.log.Info("a policy query is evaluated by OPA's interpreter, not by its plan", "reason", f)
	}
	h.current.Store(e)
	return nil
}

// Watch checks the files every interval and reloads on change.
func (h *Holder) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := h.changed()
		if err == nil && !changed {
			continue
		}
		if err == nil {
			err = h.Load(ctx)
		}
		if err != nil {
			if err.Error() != lastErr {
				h.metrics.Reload(false)
				h.log.Error(err, "reload failed; keeping the last good configuration and policies")
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		h.metrics.Reload(true)
		h.log.Info("reloaded configuration and policies", "enforcement", h.Get().Config().Enforcement)
	}
}

// changed says whether the files differ from those last tried.
func (h *Holder) changed() (bool, error) {
	digest, err := h.sum()
	if err != nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return digest != h.digest, nil
}

// sum digests the config file and every policy file.
func (h *Holder) sum() ([32]byte, error) {
	files := []string{}
	if h.configFile != "" {
		files = append(files, h.configFile)
	}
	for _, dir := range h.policyDirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && len(d.Name()) > 1 && d.Name()[:2] == ".." {
				return filepath.SkipDir
			}
			if !d.IsDir() && filepath.Ext(path) == ".rego" {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return [32]byte{}, err
		}
	}
	sort.Strings(files)
	hash := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return [32]byte{}, err
		}
		hash.Write([]byte(f))
		hash.Write(b)
	}
	var out [32]byte
	copy(out[:], hash.Sum(nil))
	return out, nil
}
