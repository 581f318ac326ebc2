package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// Inventory is what the engine knows of other objects, for cross-object rules.
// An Inventory given to New or WithInventory is read then and by later
// swaps: the caller does not modify its ServiceEntries' hosts after (it
// may give another slice of hosts, or another list).
type Inventory struct {
	ServiceEntries []ServiceEntryRef `json:"serviceEntries"`
	// VirtualServicesByHost are the VirtualServices (each as JSON) that name
	// each host in spec.hosts, as data.inventory.virtualServicesByHost: the
	// audit, which reads every object, knows them; nil elsewhere (serve
	// follows ServiceEntries only), and then rules that need them say
	// nothing.
	VirtualServicesByHost map[string][]json.RawMessage `json:"-"`
	// Model is the cluster model (data.inventory.objects and byHost); nil:
	// none, and rules that need it say nothing.
	Model *Model `json:"-"`
}

// ServiceEntryRef is the part of a ServiceEntry other rules look at.
type ServiceEntryRef struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Hosts     []string `json:"hosts"`
	Location  string   `json:"location,omitempty"`
}

// document is the policies' data document,
//
//	{"config": <the configuration, derived values, allowIndex>,
//	 "inventory": <serviceEntries, externalHosts, externalSuffixes, externalSuffixIndex>}
//
// in the forms the evaluators read: a value for the IR evaluator and, over
// the same value's ast form, made when topdown first reads it, an in-memory
// store for topdown. It never
// changes; a swap builds another, which shares the unchanged part.
type document struct {
	value vm.Value
	// store is made on topdown's first read: the IR evaluator, which runs
	// every query but those it cannot run, never needs it, and a copy of
	// the inventory in OPA's values costs as much again as the inventory.
	store func() storage.Store
	// config is data.config, kept for the documents withInventory builds.
	config vm.Value
	// serviceEntries counts the inventory's ServiceEntries.
	serviceEntries int
	// inventory is data.inventory, and what the next swap builds from.
	inventory *inventoryDoc
	// model is data.inventory's objects and byHost (nil: no model), built
	// with the cluster domain domain.
	model  *modelDoc
	domain string
}

// newDocument builds the data document of a configuration and an inventory.
func newDocument(cfg *config.Config, inv Inventory) (*document, error) {
	c, err := configValue(cfg)
	if err != nil {
		return nil, err
	}
	return assemble(vm.Share(vm.FromAST(c)), buildInventory(inv), buildModel(nil, inv.Model, cfg.ClusterDomain), cfg.ClusterDomain), nil
}

// withInventory builds the document with d's configuration and inv, from
// d's inventory where it can (see inventoryDoc).
func (d *document) withInventory(inv Inventory) (*document, error) {
	return assemble(d.config, d.inventory.withInventory(inv), buildModel(d.model, inv.Model, d.domain), d.domain), nil
}

// assemble is the document of data.config cfg (shared) and data.inventory
// inv. Both are ready for concurrent evaluations as they are (their objects
// are built in order): the document is not walked again.
func assemble(cfg vm.Value, inv *inventoryDoc, model *modelDoc, domain string) *document {
	value := inv.value
	if model != nil {
		value = inv.valueWith("objects", model.objects, "byHost", model.byHost)
	}
	d := docFromValue(vm.NewObject("config", cfg, "inventory", value))
	d.config, d.serviceEntries, d.inventory, d.model, d.domain = cfg, len(inv.refs), inv, model, domain
	return d
}

// docFromValue is a document holding v, a shared value (vm.Share).
func docFromValue(v vm.Value) *document {
	return &document{value: v, store: sync.OnceValue(func() storage.Store {
		obj, ok := vm.ToAST(v).(ast.Object)
		if !ok {
			obj = ast.NewObject()
		}
		return inmem.NewFromASTObject(obj)
	})}
}

// emptyDocument is a document without data, for queries that read none.
func emptyDocument() *document { return docFromValue(vm.Share(vm.NewObject())) }

// configValue is data.config: the configuration as JSON, with the values
// the rules derive from it and the index of its allow list.
func configValue(cfg *config.Config) (ast.Value, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("engine: config: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("engine: config: %w", err)
	}
	doc["gatewayHost"] = cfg.GatewayHost()
	doc["gatewayNames"] = map[string]any{
		cfg.GatewayHost(): true,
		cfg.Gateway.Service + "." + cfg.Gateway.Namespace:          true,
		cfg.Gateway.Service + "." + cfg.Gateway.Namespace + ".svc": true,
	}
	doc["serviceSuffix"] = ".svc." + cfg.ClusterDomain
	allow, _ := doc["allow"].([]any)
	index, err := allowIndex(allow)
	if err != nil {
		return nil, err
	}
	doc["allowIndex"] = index
	return ast.InterfaceToValue(doc)
}

// allowIndex indexes the allow list (its JSON form, as the rules read it)
// as lib/hosts.rego's _allow_index derives it when the data lacks it:
// "hosts" maps a pattern that is not a "*." wildcard to the positions
// [entry, pattern] that hold it, "suffixes" maps ".x.com" to those of
// "*.x.com"; positions in the list's order.
func allowIndex(allow []any) (map[string]any, error) {
	hosts, suffixes := map[string]any{}, map[string]any{}
	for i, e := range allow {
		entry, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("engine: config: allow[%d] is not an object", i)
		}
		patterns, _ := entry["hosts"].([]any)
		for j, p := range patterns {
			pattern, ok := p.(string)
			if !ok {
				return nil, fmt.Errorf("engine: config: allow[%d].hosts[%d] is not a string", i, j)
			}
			index, key := hosts, pattern
			if rest, ok := strings.CutPrefix(pattern, "*."); ok {
				index, key = suffixes, "."+rest
			}
			positions, _ := index[key].([]any)
			index[key] = append(positions, []any{i, j})
		}
	}
	return map[string]any{"hosts": hosts, "suffixes": suffixes}, nil
}

// inventoryKeys are the object keys of data.inventory, shared by its values.
var inventoryKeys = map[string]vm.Value{"namespace": "namespace", "name": "name", "hosts": "hosts", "location": "location"}

// dataStore is the store topdown's queries are prepared with. A prepared
// query reads data through the store it was prepared with; this one holds
// none of its own: it reads the document of the transaction an evaluation
// opens (document.begin). So a data swap needs no new preparation, an
// evaluation reads one document from start to end, and a swap never waits
// for evaluations nor they for it.
type dataStore struct {
	storage.WritesNotSupported
	storage.PolicyNotSupported
	storage.TriggersNotSupported
}

// docTxn is a read transaction on a document's store.
type docTxn struct {
	store storage.Store
	txn   storage.Transaction
}

func (t *docTxn) ID() uint64 { return t.txn.ID() }

// begin opens a read transaction on d for an evaluation; end closes it.
func (d *document) begin(ctx context.Context) (*docTxn, error) {
	store := d.store()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	return &docTxn{store: store, txn: txn}, nil
}

func (t *docTxn) end(ctx context.Context) { t.store.Abort(ctx, t.txn) }

// NewTransaction opens a transaction on an empty document: preparing a
// query reads no data.
func (dataStore) NewTransaction(ctx context.Context, params ...storage.TransactionParams) (storage.Transaction, error) {
	for _, p := range params {
		if p.Write {
			return nil, &storage.Error{Code: storage.WritesNotSupportedErr, Message: "the policies' data is swapped whole, not written"}
		}
	}
	return emptyDocument().begin(ctx)
}

func (dataStore) Read(ctx context.Context, txn storage.Transaction, path storage.Path) (any, error) {
	t, err := docTxnOf(txn)
	if err != nil {
		return nil, err
	}
	return t.store.Read(ctx, t.txn, path)
}

func (dataStore) Commit(ctx context.Context, txn storage.Transaction) error {
	t, err := docTxnOf(txn)
	if err != nil {
		return err
	}
	return t.store.Commit(ctx, t.txn)
}

func (dataStore) Abort(ctx context.Context, txn storage.Transaction) {
	if t, err := docTxnOf(txn); err == nil {
		t.end(ctx)
	}
}

func (dataStore) Truncate(context.Context, storage.Transaction, storage.TransactionParams, storage.Iterator) error {
	return &storage.Error{Code: storage.WritesNotSupportedErr, Message: "the policies' data is swapped whole, not written"}
}

func docTxnOf(txn storage.Transaction) (*docTxn, error) {
	t, ok := txn.(*docTxn)
	if !ok {
		return nil, &storage.Error{Code: storage.InvalidTransactionErr, Message: fmt.Sprintf("unexpected transaction type %T", txn)}
	}
	return t, nil
}
