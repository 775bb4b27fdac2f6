package hostenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	mount string
	v2    bool
	// memory: the hierarchy that accounts memory (v1's memory controller,
	// or the unified hierarchy on a v2-only host).
	memory bool
}

// parseHierarchies reads /proc/self/mountinfo text.
func parseHierarchies(mountinfo string) []hierarchy {
	var out []hierarchy
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fs, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fs) < 5 || len(g) < 3 || fs[3] != "/" {
			continue
		}
		switch g[0] {
		case "cgroup":
			mem := false
			for _, o := range strings.Split(g[2], ",") {
				mem = mem || o == "memory"
			}
			out = append(out, hierarchy{mount: fs[4], memory: mem})
		case "cgroup2":
			out = append(out, hierarchy{mount: fs[4], v2: true})
		}
	}
	// On a v2-only host the unified hierarchy accounts memory.
	hasV1Memory := false
	for _, h := range out {
		hasV1Memory = hasV1Memory || h.memory
	}
	if !hasV1Memory {
		for i := range out {
			out[i].memory = out[i].v2
		}
	}
	return out
}

func hostHierarchies() []hierarchy {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return parseHierarchies(string(b))
}

// memoryChargeMiB is what the kernel charges to cgroup path (its
// descendants included).
func memoryChargeMiB(path string) (float64, error) {
	for _, h := range hostHierarchies() {
		if !h.memory {
			continue
		}
		file := "memory.usage_in_bytes"
		if h.v2 {
			file = "memory.current"
		}
		b, err := os.ReadFile(filepath.Join(h.mount, path, file))
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

// removeCgroupTree removes cgroup path and everything below it from every
// hierarchy, deepest first. A cgroup that still holds a process cannot be
// removed: that is reported, as a leak.
func removeCgroupTree(path string) error {
	var dirs []string
	for _, h := range hostHierarchies() {
		top := filepath.Join(h.mount, path)
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var failed []string
	for _, d := range dirs {
		var err error
		for range 40 {
			if err = syscall.Rmdir(d); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			failed = append(failed, fmt.Sprintf("host cgroup %s: %v (processes: %s)", d, err, strings.Join(strings.Fields(string(procs)), " ")))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}
