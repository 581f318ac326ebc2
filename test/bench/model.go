package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/egress-guard/egress-guard/webhook/config"
	"github.com/egress-guard/egress-guard/webhook/engine"
)

// modelResult is the cluster model measured in process.
type modelResult struct {
	perKind, kinds int
	// heap is the live heap the model adds to an engine: the objects in
	// the model's form and the data document's values and indexes.
	heap uint64
	// convert is the conversion of every object; build the first swap of
	// the whole model into an engine.
	convert, build time.Duration
	// swaps are swaps of the model with one object of one kind changed.
	swaps []time.Duration
}

// modelObjectJSON is the i-th generated object of kind, shaped as a
// platform writes them (kubectl's last-applied annotation included, which
// the model drops; a Secret's values, which it drops too).
func modelObjectJSON(kind string, i, gen int) string {
	ns := fmt.Sprintf("team-%02d", i%50)
	host := fmt.Sprintf("api-%05d.partner-%02d.example.com", i, i%50)
	meta := func(ns string) string {
		return fmt.Sprintf(`"metadata":{"name":"obj-%05d","namespace":%q,"uid":"u-%d","resourceVersion":"%d","generation":1,`+
			`"labels":{"app":"obj-%05d","team":%q},"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"x\",\"kind\":\"y\",\"spec\":{\"note\":\"a copy of the object as applied, as large as it\"}}"},`+
			`"managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{}}}}]}`, i, ns, i, 100+gen, i, ns)
	}
	switch kind {
	case "ServiceEntry":
		return fmt.Sprintf(`{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry",%s,"spec":{"hosts":[%q],"location":"MESH_EXTERNAL","resolution":"DNS","exportTo":["."],"ports":[{"number":443,"name":"tls","protocol":"TLS"},{"number":80,"name":"http","protocol":"HTTP"}]}}`, meta(ns), host)
	case "VirtualService":
		return fmt.Sprintf(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",%s,"spec":{"hosts":[%q],"gateways":["istio-system/egress-gateway","mesh"],"tls":[`+
			`{"match":[{"gateways":["mesh"],"port":443,"sniHosts":[%q]}],"route":[{"destination":{"host":"istio-egressgateway.istio-system.svc.cluster.local","subset":"s-%d","port":{"number":443}}}]},`+
			`{"match":[{"gateways":["istio-system/egress-gateway"],"port":443,"sniHosts":[%q]}],"route":[{"destination":{"host":%q,"port":{"number":443}},"weight":100}]}]}}`, meta(ns), host, host, i, host, host)
	case "DestinationRule":
		return fmt.Sprintf(`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule",%s,"spec":{"host":%q,"exportTo":["."],"trafficPolicy":{"portLevelSettings":[{"port":{"number":443},"tls":{"mode":"MUTUAL","credentialName":"cred-%d","sni":%q}}]},"subsets":[{"name":"s-%d","labels":{"version":"v1"}}]}}`, meta(ns), host, i, host, i)
	case "Gateway":
		return fmt.Sprintf(`{"apiVersion":"networking.istio.io/v1","kind":"Gateway",%s,"spec":{"selector":{"istio":"egressgateway"},"servers":[{"port":{"number":443,"name":"tls-%d","protocol":"TLS"},"hosts":[%q],"tls":{"mode":"PASSTHROUGH"}}]}}`, meta(ns), i, host)
	case "Sidecar":
		return fmt.Sprintf(`{"apiVersion":"networking.istio.io/v1","kind":"Sidecar",%s,"spec":{"workloadSelector":{"labels":{"app":"obj-%05d"}},"egress":[{"hosts":["./*","istio-system/*"]}],"outboundTrafficPolicy":{"mode":"REGISTRY_ONLY"}}}`, meta(ns), i)
	case "AuthorizationPolicy":
		return fmt.Sprintf(`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",%s,"spec":{"selector":{"matchLabels":{"istio":"egressgateway"}},"action":"ALLOW","rules":[{"from":[{"source":{"principals":["cluster.local/ns/%s/sa/client-%d"]}}],"to":[{"operation":{"hosts":[%q],"ports":["443"]}}]}]}}`, meta("istio-system"), ns, i, host)
	case "Secret":
		value := strings.Repeat("QUJD", 400) // 1.6 kB, as a certificate
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret",%s,"type":"kubernetes.io/tls","data":{"tls.crt":%q,"tls.key":%q,"ca.crt":%q}}`, meta("istio-system"), value, value, value)
	case "NetworkPolicy":
		return fmt.Sprintf(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",%s,"spec":{"podSelector":{"matchLabels":{"app":"obj-%05d"}},"policyTypes":["Egress"],"egress":[{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"istio-system"}}}]},{"to":[{"ipBlock":{"cidr":"10.%d.0.0/16"}}],"ports":[{"port":443,"protocol":"TCP"}]}]}}`, meta(ns), i, i%250)
	}
	return ""
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// modelBench measures the cluster model in process with n objects of each
// kind of config.ModelKinds: converted as serve's watcher converts them
// (engine.NewModelObject), swapped into an engine of the bench's
// configuration, then swapped again with one object changed, many times.
func modelBench(ctx context.Context, n, swaps int) (*modelResult, error) {
	cfg, err := config.Parse([]byte(benchConfig))
	if err != nil {
		return nil, err
	}
	base, err := engine.New(ctx, engine.Options{Config: cfg})
	if err != nil {
		return nil, err
	}
	res := &modelResult{perKind: n, kinds: len(config.ModelKinds)}
	before := liveHeap()
	start := time.Now()
	model := &engine.Model{}
	for _, k := range config.ModelKinds {
		mk := &engine.ModelKind{Kind: k.Kind, Objects: make([]*engine.ModelObject, 0, n)}
		for i := range n {
			o, err := engine.NewModelObject(k.Kind, []byte(modelObjectJSON(k.Kind, i, 0)))
			if err != nil {
				return nil, fmt.Errorf("%s %d: %w", k.Kind, i, err)
			}
			mk.Objects = append(mk.Objects, o)
		}
		model.Kinds = append(model.Kinds, mk)
	}
	res.convert = time.Since(start)
	start = time.Now()
	e, err := base.WithInventory(engine.Inventory{Model: model})
	if err != nil {
		return nil, err
	}
	res.build = time.Since(start)
	res.heap = liveHeap() - before
	for s := range swaps {
		k := s % len(model.Kinds)
		prev := model.Kinds[k]
		changed := &engine.ModelKind{Kind: prev.Kind, Objects: append([]*engine.ModelObject(nil), prev.Objects...)}
		i := (s * 7919) % n
		o, err := engine.NewModelObject(prev.Kind, []byte(modelObjectJSON(prev.Kind, i, s+1)))
		if err != nil {
			return nil, err
		}
		changed.Objects[i] = o
		// As serve's watcher says it: what changed since the last one.
		changed.Base, changed.Changed = prev, map[string]*engine.ModelObject{o.Namespace + "/" + o.Name: o}
		next := &engine.Model{Kinds: append([]*engine.ModelKind(nil), model.Kinds...)}
		next.Kinds[k] = changed
		start := time.Now()
		if e, err = e.WithInventory(engine.Inventory{Model: next}); err != nil {
			return nil, err
		}
		res.swaps = append(res.swaps, time.Since(start))
		model = next
	}
	runtime.KeepAlive(e)
	return res, nil
}

func printModel(m *modelResult) {
	total := m.perKind * m.kinds
	fmt.Printf("cluster model in process: %d objects of each of its %d kinds (%d), as serve --inventory keeps them\n", m.perKind, m.kinds, total)
	fmt.Printf("  %-32s %12.1f\n", "live heap MiB", float64(m.heap)/(1<<20))
	fmt.Printf("  %-32s %12.0f\n", "bytes per object", float64(m.heap)/float64(total))
	fmt.Printf("  %-32s %12.2f\n", "conversion s", m.convert.Seconds())
	fmt.Printf("  %-32s %12.1f\n", "first swap ms", float64(m.build)/float64(time.Millisecond))
	fmt.Printf("  %-32s %12.2f\n", "one change swapped p50 ms", quantile(m.swaps, 0.5)/1000)
	fmt.Printf("  %-32s %12.2f\n", "one change swapped p99 ms", quantile(m.swaps, 0.99)/1000)
}
