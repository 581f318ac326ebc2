package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// Holder keeps the engine in force and swaps it atomically. A change of the
// configuration or policy files compiles a new engine (Load); a change of
// the cluster's inventory swaps the data alone, keeping the compiled
// policies (Refresh). A reload that fails keeps the last good engine and
// says why (log and metric).
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
	// compiles counts the engines compiled (Load), good or bad.
	compiles atomic.Uint64
}

// Get returns the engine in force.
func (h *Holder) Get() *engine.Engine { return h.current.Load() }

// Compiles is the number of times the policies were compiled.
func (h *Holder) Compiles() uint64 { return h.compiles.Load() }

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

// Refresh puts in force the engine in force with the cluster's inventory
// inv: the compiled policies stay, the data document is swapped.
func (h *Holder) Refresh(_ context.Context, inv engine.Inventory) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.current.Load()
	if cur == nil {
		return errors.New("no configuration loaded")
	}
	e, err := cur.WithInventory(inv)
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
	files, err := h.read()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// What was tried, good or bad: a broken file is reported once, not on
	// every tick, and tried again when it changes.
	h.digest = files.digest
	return h.build(ctx, files)
}

// build compiles an engine from files read and puts it in force; h.mu is
// held.
func (h *Holder) build(ctx context.Context, files *files) error {
	cfg := config.Default()
	if h.configFile != "" {
		var err error
		if cfg, err = config.Parse(files.config); err != nil {
			return fmt.Errorf("config %s: %w", h.configFile, err)
		}
	}
	h.compiles.Add(1)
	h.metrics.Compile()
	e, err := engine.New(ctx, engine.Options{Config: cfg, Policies: files.policies, Inventory: h.inventory})
	if err != nil {
		return err
	}
	for _, f := range e.Fallbacks() {
		h.log.Info("a policy query is evaluated by OPA's interpreter, not by its plan", "reason", f)
	}
	if prev := h.current.Load(); prev != nil && h.inventory.Model != nil && prev.Config().Gateway.Namespace != cfg.Gateway.Namespace {
		h.log.Info("the gateway's namespace changed: the cluster model keeps reading AuthorizationPolicies and Secrets in the former one until serve restarts",
			"former", prev.Config().Gateway.Namespace, "now", cfg.Gateway.Namespace)
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
		err := h.reload(ctx)
		if errors.Is(err, errUnchanged) {
			continue
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

var errUnchanged = errors.New("unchanged")

// reload reads the files once and, when they differ from those last tried,
// builds an engine from what it read; errUnchanged when they do not.
func (h *Holder) reload(ctx context.Context) error {
	files, err := h.read()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if files.digest == h.digest {
		return errUnchanged
	}
	h.digest = files.digest
	return h.build(ctx, files)
}

// files are the configuration and policy files as read, and their digest.
type files struct {
	digest   [32]byte
	config   []byte
	policies []engine.PolicyFile
}

// read reads the config file and the policy files, each once, and digests
// them.
func (h *Holder) read() (*files, error) {
	out := &files{}
	hash := sha256.New()
	if h.configFile != "" {
		b, err := os.ReadFile(h.configFile)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		out.config = b
		hash.Write([]byte(h.configFile))
		hash.Write(b)
	}
	policies, err := engine.ReadPolicies(h.policyDirs)
	if err != nil {
		return nil, err
	}
	for _, f := range policies {
		hash.Write([]byte(f.Path))
		hash.Write(f.Source)
	}
	out.policies = policies
	copy(out.digest[:], hash.Sum(nil))
	return out, nil
}
