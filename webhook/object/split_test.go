package object

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The one-pass split gives what the full decoder gives, and declines what
// the full decoder must explain.
func TestSplitMatchesTheDecoder(t *testing.T) {
	for _, raw := range []string{
		`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"v","annotations":{"a":"x\"y\u00e9"}},"spec":{"hosts":["a.com"],"n":[1,2.5e3]},"status":{"x":1}}`,
		`{"kind":null,"spec":null}`,
		`{"metadata":{}}`,
	} {
		got, ok := split([]byte(raw), false)
		if !ok {
			t.Fatalf("%s: declined", raw)
		}
		var want envelope
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		if got.APIVersion != want.APIVersion || got.Kind != want.Kind || !sameJSON(t, got.Metadata, want.Metadata) || !sameJSON(t, got.Spec, want.Spec) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", raw, got, want)
		}
	}
	for _, raw := range []string{`[1]`, `{"kind":1}`, `{"spec":{},"spec":{}}`, `{"spec":{"n":NaN}}`, `{"spec":{}`} {
		if _, ok := split([]byte(raw), false); ok {
			t.Errorf("%s: accepted", raw)
		}
	}
	if _, ok := split([]byte(`{"spec":{}}`), true); ok {
		t.Error("strict decoding is the full decoder's")
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y bytes.Buffer
	if err := json.Compact(&x, a); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&y, b); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}
