package guard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
)

// diff is the RFC 6902 patch from one JSON document to another, in path
// order (the library emits the operations on an object's keys in map
// order); nil when they are equal.
func diff(from, to []byte) (_ []jsonpatch.Operation, err error) {
	defer Contain(StepDiff, &err)
	if from == nil || bytes.Equal(from, to) {
		return nil, nil
	}
	ops, err := jsonpatch.CreatePatch(from, to)
	if err != nil || len(ops) == 0 {
		return nil, err
	}
	slices.SortStableFunc(ops, func(a, b jsonpatch.Operation) int { return strings.Compare(a.Path, b.Path) })
	return ops, nil
}

// ApplyPatch applies RFC 6902 operations to a JSON document, as the API
// server does.
func ApplyPatch(doc []byte, ops []jsonpatch.Operation) ([]byte, error) {
	raw, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchapply.DecodePatch(raw)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

// Describe summarises a patch for people: one line per operation.
func Describe(patch []jsonpatch.Operation) []string {
	out := make([]string, 0, len(patch))
	for _, op := range patch {
		if op.Operation == "remove" {
			out = append(out, fmt.Sprintf("%s %s", op.Operation, op.Path))
			continue
		}
		v, _ := json.Marshal(op.Value)
		out = append(out, fmt.Sprintf("%s %s %s", op.Operation, op.Path, v))
	}
	return out
}
