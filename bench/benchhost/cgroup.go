package benchhost

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/podvm/podvm/internal/hostbed"
)

// memoryChargeMiB is what the kernel charges to cgroup path (its
// descendants included).
func memoryChargeMiB(path string) (float64, error) {
	for _, h := range hostbed.Hierarchies() {
		if !h.Memory {
			continue
		}
		file := "memory.usage_in_bytes"
		if h.V2 {
			file = "memory.current"
		}
		b, err := os.ReadFile(filepath.Join(h.Mount, path, file))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		return float64(n) / (1 << 20), nil
	}
	return 0, fmt.Errorf("no memory cgroup hierarchy mounted")
}
