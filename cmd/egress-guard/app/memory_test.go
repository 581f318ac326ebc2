package app

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	const mi = 1 << 20
	for _, tc := range []struct {
		name, flag string
		files      map[string]string
		want       int64
		from       string
	}{
		{"cgroup v2 limit", "", map[string]string{"/sys/fs/cgroup/memory.max": "268435456\n"}, 256 * mi * 8 / 10, "80% of the container's limit"},
		{"cgroup v2 without limit", "", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0, "no memory limit"},
		{"cgroup v1 limit", "", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912"}, 512 * mi * 8 / 10, "memory.limit_in_bytes"},
		{"cgroup v1 without limit", "", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}, 0, "no memory limit"},
		{"no cgroup", "", nil, 0, "no cgroup memory limit"},
		{"flag", "200Mi", map[string]string{"/sys/fs/cgroup/memory.max": "268435456"}, 200 * mi, "--memory-limit"},
		{"none", "none", map[string]string{"/sys/fs/cgroup/memory.max": "268435456"}, 0, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := memoryLimit(tc.flag, files(tc.files))
			if err != nil || got != tc.want || !strings.Contains(from, tc.from) {
				t.Errorf("got %d from %q (%v), want %d from %q", got, from, err, tc.want, tc.from)
			}
		})
	}
	for _, bad := range []string{"lots", "-1Mi", "0"} {
		if _, _, err := memoryLimit(bad, files(nil)); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("--memory-limit %q: got %v, want an error naming the flag", bad, err)
		}
	}
	broken := func(string) ([]byte, error) { return nil, errors.New("permission denied") }
	if _, _, err := memoryLimit("", broken); err == nil {
		t.Error("an unreadable cgroup file is not an error")
	}
}
