package app

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// memoryLimitShare is the part of the container's memory limit the Go heap
// may grow to before the GC works harder: the rest is for stacks, the
// runtime and what is not the heap.
const memoryLimitShare = 0.8

// cgroupLimitFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit is the soft memory limit serve gives the Go runtime
// (debug.SetMemoryLimit), in bytes, and where it comes from; 0 for none.
// flag is --memory-limit: a quantity (256Mi), "none", or "" for 80% of the
// container's limit when it has one. read reads a file.
func memoryLimit(flag string, read func(string) ([]byte, error)) (int64, string, error) {
	switch flag {
	case "none":
		return 0, "none", nil
	case "":
		for _, f := range cgroupLimitFiles {
			b, err := read(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, "", fmt.Errorf("reading the container's memory limit: %w", err)
			}
			s := strings.TrimSpace(string(b))
			n, err := strconv.ParseInt(s, 10, 64)
			if s == "max" || err != nil || n <= 0 || n >= math.MaxInt64/2 {
				// no limit (v1 writes a huge number), or nothing we read
				return 0, "none: the container has no memory limit", nil
			}
			return int64(float64(n) * memoryLimitShare), fmt.Sprintf("%d%% of the container's limit (%s)", int(memoryLimitShare*100), f), nil
		}
		return 0, "none: no cgroup memory limit found", nil
	}
	q, err := resource.ParseQuantity(flag)
	if err != nil || q.Sign() <= 0 {
		return 0, "", fmt.Errorf("--memory-limit %q: want a quantity such as 200Mi, or none", flag)
	}
	return q.Value(), "--memory-limit", nil
}

// readFile is os.ReadFile, for memoryLimit.
func readFile(name string) ([]byte, error) { return os.ReadFile(name) }
