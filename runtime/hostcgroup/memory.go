package hostcgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MemoryWorkingSet is what cgroup path is charged for memory, less its
// inactive file cache: the working set, as cAdvisor and containerd's CRI
// compute it and the kubelet ranks pods for eviction by.
func MemoryWorkingSet(path string) (uint64, error) {
	hs, err := hostHierarchies()
	if err != nil {
		return 0, fmt.Errorf("memory of host cgroup %s: %w", path, err)
	}
	for _, h := range hs {
		if h.memory {
			return h.workingSet(path)
		}
	}
	return 0, fmt.Errorf("memory of host cgroup %s: no memory controller is mounted", path)
}

func (h hierarchy) workingSet(path string) (uint64, error) {
	dir := filepath.Join(h.dir, path)
	usageFile, inactiveKey := "memory.usage_in_bytes", "total_inactive_file"
	if h.v2 {
		usageFile, inactiveKey = "memory.current", "inactive_file"
	}
	usage, err := readUint(filepath.Join(dir, usageFile))
	if err != nil {
		return 0, err
	}
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, fmt.Errorf("read memory.stat of %s: %w", dir, err)
	}
	inactive, err := statField(stat, inactiveKey)
	if err != nil {
		return 0, fmt.Errorf("%s/memory.stat: %w", dir, err)
	}
	return usage - min(inactive, usage), nil
}

func readUint(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", file, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return n, nil
}

// statField is the value of key in a memory.stat file's "key value" lines.
func statField(stat []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s", key)
}
