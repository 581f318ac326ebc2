package check

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func TestToYAMLMatchesJSONToYAML(t *testing.T) {
	for _, js := range []string{
		`{"spec":{"b":[1,2.5,"x",true,null,{"z":1,"a":"80"}],"a":{"port":{"number":443}},"big":10000000,"neg":-3,"e":1e21,"s":"yes","empty":{},"list":[]}}`,
		`{"metadata":{"annotations":{"k":"{\"a\":1}\n"}},"apiVersion":"v1"}`,
	} {
		want, err := yaml.JSONToYAML([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		got, err := toYAML([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("toYAML:\n%s\nJSONToYAML:\n%s", got, want)
		}
	}
}
