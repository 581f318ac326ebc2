package engine

import (
	"context"
	"reflect"
	"testing"
)

// FuzzEvaluatorsAgree: for any object of a handled kind, the IR evaluator
// and topdown give the same violations and intents, or both fail.
func FuzzEvaluatorsAgree(f *testing.F) {
	seeds := []struct {
		kind uint8
		obj  string
	}{
		{1, directVS},
		{1, `{"metadata":{"name":"v","namespace":"default"},"spec":{"hosts":["test.com"],"gateways":["mesh","istio-system/egress-gateway"],"http":[{"match":[{"gateways":["mesh"],"port":80}],"route":[{"destination":{"host":"istio-egressgateway.istio-system.svc.cluster.local","port":{"number":80}}}]},{"match":[{"gateways":["istio-system/egress-gateway"],"port":80}],"route":[{"destination":{"host":"test.com","port":{"number":443}}}]}]}}`},
		{1, `{"spec":{"hosts":["*.wikipedia.org"],"tls":[{"match":[{"port":443,"sniHosts":["en.wikipedia.org"]}],"route":[{"destination":{"host":"en.wikipedia.org"}}]}],"tcp":[{"match":[{"port":3306}],"route":[{"destination":{"host":"mysql.example"}}]}]}}`},
		{1, `{"spec":{"hosts":["evil.example"],"http":[{"route":[{"destination":{"host":"evil.example"}}],"mirror":{"host":"x.example"}}]}}`},
		{0, `{"spec":{"hosts":["test.com"],"location":"MESH_EXTERNAL","resolution":"DNS","ports":[{"number":443,"name":"https","protocol":"TLS"}],"endpoints":[{"address":"192.0.2.10"}]}}`},
		{0, `{"spec":{"hosts":["evil.example"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}]}}`},
		{0, `{"spec":{"hosts":["test.com"],"workloadSelector":{"labels":{"app":"x"}}}}`},
		{2, `{"spec":{"host":"test.com","trafficPolicy":{"tls":{"mode":"DISABLE"}}}}`},
		{2, `{"spec":{"host":"test.com","trafficPolicy":{"portLevelSettings":[{"port":{"number":443},"tls":{"mode":"SIMPLE","insecureSkipVerify":true}}]},"subsets":[{"name":"a","trafficPolicy":{"tls":{"mode":"DISABLE"}}}]}}`},
		{2, `{"spec":{"host":"test.com","trafficPolicy":{"portLevelSettings":[{"port":{"number":443},"tls":{"mode":"MUTUAL","credentialName":"test.client","sni":"test.com"}}]}}}`},
		{3, `{"spec":{}}`},
		{1, `{"spec":{"hosts":[1, null, {"a": []}],"http":"x"}}`},
	}
	for _, s := range seeds {
		f.Add(s.kind, []byte(s.obj))
	}
	ctx := context.Background()
	cfg := testConfig(f)
	ir, err := New(ctx, Options{Config: cfg, Evaluator: EvaluatorIR})
	if err != nil {
		f.Fatal(err)
	}
	if fb := ir.Fallbacks(); len(fb) > 0 {
		f.Fatalf("the embedded pack falls back to topdown: %v", fb)
	}
	td, err := New(ctx, Options{Config: cfg, Evaluator: EvaluatorTopdown})
	if err != nil {
		f.Fatal(err)
	}
	kinds := []string{"ServiceEntry", "VirtualService", "DestinationRule", "Gateway"}
	f.Fuzz(func(t *testing.T, kind uint8, obj []byte) {
		in, err := Input(request(kinds[int(kind)%len(kinds)], string(obj)))
		if err != nil {
			return
		}
		v1, err1 := ir.Violations(ctx, in)
		v2, err2 := td.Violations(ctx, in)
		if (err1 != nil) != (err2 != nil) || !reflect.DeepEqual(v1, v2) {
			t.Fatalf("violations disagree:\n ir:      %+v %v\n topdown: %+v %v", v1, err1, v2, err2)
		}
		i1, err1 := ir.Intents(ctx, in)
		i2, err2 := td.Intents(ctx, in)
		if (err1 != nil) != (err2 != nil) || !reflect.DeepEqual(i1, i2) {
			t.Fatalf("intents disagree:\n ir:      %+v %v\n topdown: %+v %v", i1, err1, i2, err2)
		}
	})
}
