package object

import (
	"errors"
	"strings"
	"testing"
)

func TestPathAt(t *testing.T) {
	doc := `{"hosts":["a.com","b.com"],"ports":[{"name":"http","number":"eighty"}],"x":{"y":[1,[2,3]]}}`
	for _, tc := range []struct{ at, want string }{
		{`"b.com"`, "spec.hosts[1]"},
		{`"eighty"`, "spec.ports[0].number"},
		{`"number"`, "spec.ports[0].number"},
		{`3]`, "spec.x.y[1][1]"},
		{`{"name"`, "spec.ports[0]"},
	} {
		off := strings.Index(doc, tc.at)
		if got := pathAt([]byte(doc), off, "spec"); got != tc.want {
			t.Errorf("at %s: got %s, want %s", tc.at, got, tc.want)
		}
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		strict          bool
	}{
		{"type", `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"s"},"spec":{"hosts":["a"],"ports":[{"number":"eighty","name":"http"}]}}`, `spec.ports[0].number: invalid value for uint32 field number: "eighty"`, false},
		{"enum", `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"s"},"spec":{"hosts":["a"],"resolution":"WHAT"}}`, `spec.resolution: invalid value for enum field resolution: "WHAT"`, true},
		{"not a list", `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"v"},"spec":{"hosts":"a.com"}}`, `spec.hosts`, false},
		{"unknown strict", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"d"},"spec":{"host":"a","trafficPolicy":{"tlz":{}}}}`, `spec.trafficPolicy.tlz: unknown field "tlz"`, true},
		{"unknown metadata", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"d","labelz":{}},"spec":{"host":"a"}}`, `metadata.`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind := strings.Split(strings.Split(tc.raw, `"kind":"`)[1], `"`)[0]
			err := Check(Group, kind, []byte(tc.raw), tc.strict)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			// A spec's error is a FieldError: its field apart, for a
			// status cause.
			var fe *FieldError
			if field, _, _ := strings.Cut(tc.want, ": "); strings.HasPrefix(tc.want, "spec.") && (!errors.As(err, &fe) || fe.Field != field) {
				t.Errorf("got %#v, want a FieldError for %s", err, field)
			}
		})
	}
	raw := `{"apiVersion":"networking.istio.io/v1beta1","kind":"DestinationRule","metadata":{"name":"d"},"spec":{"host":"a","trafficPolicy":{"tlz":{}}}}`
	if _, err := DecodeSpec(DestinationRule, []byte(raw), false); err != nil {
		t.Errorf("lenient decoding ignores unknown fields (the API server prunes them): %v", err)
	}
}

// Check and DecodeSpec agree on the spec; lenient checking leaves the
// metadata to the API server.
func TestCheck(t *testing.T) {
	badSpec := `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"s"},"spec":{"hosts":"a.com"}}`
	for _, strict := range []bool{false, true} {
		if err := Check(Group, ServiceEntry, []byte(badSpec), strict); err == nil || !strings.Contains(err.Error(), "spec.hosts") {
			t.Errorf("strict %v: %v", strict, err)
		}
	}
	badMeta := `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"s","labels":{"a":1}},"spec":{"hosts":["a.com"]}}`
	if err := Check(Group, ServiceEntry, []byte(badMeta), false); err != nil {
		t.Errorf("lenient: %v", err)
	}
	if err := Check(Group, ServiceEntry, []byte(badMeta), true); err == nil || !strings.Contains(err.Error(), "metadata") {
		t.Errorf("strict: %v", err)
	}
	if _, err := DecodeSpec(ServiceEntry, []byte(badSpec), false); err == nil || !strings.Contains(err.Error(), "spec.hosts") {
		t.Errorf("DecodeSpec: %v", err)
	}
	if _, err := Decode("Gateway", []byte(badSpec), false); err == nil {
		t.Error("unknown kind decoded")
	}
	if err := Check(Group, "Gateway", []byte(badSpec), true); err != nil {
		t.Errorf("a kind without a type is read as its JSON, unchecked: %v", err)
	}
}
