package object

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// offsetOf converts a 1-based line and column into a byte offset.
func offsetOf(data []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return len(data)
		}
		off += i + 1
	}
	return min(off+col-1, len(data))
}

// pathAt returns the field path (root.a.b[2].c) of the JSON value at offset.
func pathAt(data []byte, offset int, root string) string {
	type frame struct {
		array bool
		index int
		key   string
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	expectKey := false
	path := func() string {
		var b strings.Builder
		b.WriteString(root)
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
			} else if f.key != "" {
				b.WriteString("." + f.key)
			}
		}
		return b.String()
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return path()
		}
		past := int(dec.InputOffset()) > offset
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if past {
					return path()
				}
				stack = append(stack, frame{array: d == '['})
				expectKey = d == '{'
				continue
			default:
				stack = stack[:top]
			}
		} else if key, ok := tok.(string); ok && expectKey {
			stack[top].key = key
			expectKey = false
			if past {
				return path()
			}
			continue
		} else if past {
			return path()
		}
		// A value ended: next comes a key (objects) or an element (arrays).
		if top = len(stack) - 1; top >= 0 {
			if stack[top].array {
				stack[top].index++
			} else {
				expectKey = true
			}
		}
	}
}
