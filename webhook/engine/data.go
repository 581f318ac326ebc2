package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// Inventory is what the engine knows of other objects, for cross-object rules.
type Inventory struct {
	ServiceEntries []ServiceEntryRef `json:"serviceEntries"`
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
	// entries are the inventory's ServiceEntries as values, by content:
	// the next swap reuses those that did not change.
	entries entryValues
}

// newDocument builds the data document of a configuration and an inventory.
func newDocument(cfg *config.Config, inv Inventory) (*document, error) {
	c, err := configValue(cfg)
	if err != nil {
		return nil, err
	}
	return assemble(vm.Share(vm.FromAST(c)), inv, nil)
}

// withInventory builds the document with d's configuration and inv.
func (d *document) withInventory(inv Inventory) (*document, error) {
	return assemble(d.config, inv, d.entries)
}

func assemble(cfg vm.Value, inv Inventory, prev entryValues) (*document, error) {
	entries := inv.entryValues(prev)
	i, err := inventoryValue(inv, entries)
	if err != nil {
		return nil, err
	}
	root := vm.Share(vm.NewObject("config", cfg, "inventory", i))
	d := docFromValue(root)
	d.config, d.serviceEntries, d.entries = cfg, len(inv.ServiceEntries), entries
	return d, nil
}

// entryValues are ServiceEntries as values, by entryKey.
type entryValues map[string]vm.Value

// entryKey is a ServiceEntry's content, as a key.
func entryKey(se ServiceEntryRef) string {
	var b strings.Builder
	for _, s := range []string{se.Namespace, se.Name, se.Location} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	if se.Hosts == nil {
		b.WriteByte(1)
	}
	for _, h := range se.Hosts {
		b.WriteString(h)
		b.WriteByte(0)
	}
	return b.String()
}

// entryValues are inv's ServiceEntries as values (in their JSON form:
// hosts null when nil, no location when empty), those of prev reused.
func (inv Inventory) entryValues(prev entryValues) entryValues {
	out := make(entryValues, len(inv.ServiceEntries))
	for _, se := range inv.ServiceEntries {
		k := entryKey(se)
		if _, done := out[k]; done {
			continue
		}
		if v, ok := prev[k]; ok {
			out[k] = v
			continue
		}
		var hosts vm.Value = vm.Null{}
		if se.Hosts != nil {
			hs := make([]vm.Value, len(se.Hosts))
			for i, h := range se.Hosts {
				hs[i] = h
			}
			hosts = vm.NewArray(hs...)
		}
		kvs := []vm.Value{inventoryKeys["namespace"], se.Namespace, inventoryKeys["name"], se.Name, inventoryKeys["hosts"], hosts}
		if se.Location != "" {
			kvs = append(kvs, inventoryKeys["location"], se.Location)
		}
		out[k] = vm.NewObject(kvs...)
	}
	return out
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

// inventoryValue is data.inventory: the ServiceEntries, and the hosts of the
// MESH_EXTERNAL ones (no location means MESH_EXTERNAL) indexed: exact names
// in externalHosts, and the suffixes (".x.com") of "*.x.com" wildcards,
// sorted in externalSuffixes and as the keys of externalSuffixIndex.
//
// The ServiceEntries are entries' values, reused from swap to swap; the
// indexes go through JSON and the evaluator's own JSON decoding, which
// build them with fewer allocations than OPA's values do.
func inventoryValue(inv Inventory, entries entryValues) (vm.Value, error) {
	ses := make([]vm.Value, len(inv.ServiceEntries))
	for i, se := range inv.ServiceEntries {
		ses[i] = entries[entryKey(se)]
	}
	var hosts, suffixes []string
	for _, se := range inv.ServiceEntries {
		if se.Location != "" && se.Location != "MESH_EXTERNAL" {
			continue
		}
		for _, h := range se.Hosts {
			if strings.HasPrefix(h, "*.") {
				suffixes = append(suffixes, h[1:])
			} else {
				hosts = append(hosts, h)
			}
		}
	}
	slices.Sort(hosts)
	slices.Sort(suffixes)
	hosts, suffixes = slices.Compact(hosts), slices.Compact(suffixes)
	b := make([]byte, 0, 32*(len(hosts)+2*len(suffixes))+128)
	b = appendSet(append(b, `{"externalHosts":`...), hosts)
	b = append(b, `,"externalSuffixes":[`...)
	for i, s := range suffixes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	b = appendSet(append(b, `],"externalSuffixIndex":`...), suffixes)
	b = append(b, '}')
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("engine: inventory: %w", err)
	}
	out, ok := vm.FromJSON(v, inventoryKeys).(*vm.Object)
	if !ok {
		return nil, fmt.Errorf("engine: inventory: not an object")
	}
	out.Insert("serviceEntries", vm.NewArray(ses...))
	return out, nil
}

// appendSet appends the JSON object {"key": true, ...} of keys.
func appendSet(b []byte, keys []string) []byte {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k), ":true"...)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string: as it is when it is printable
// ASCII without quotes or backslashes (DNS names are), else as
// encoding/json writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
