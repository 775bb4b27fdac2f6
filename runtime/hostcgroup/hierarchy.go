package hostcgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// hierarchy is one mounted cgroup hierarchy: a cgroup v1 controller (or a
// few co-mounted), a named v1 hierarchy, or the unified v2 one.
type hierarchy struct {
	dir string // mount point
	// cpuset: a v1 cpuset hierarchy, whose new cgroups start with no CPUs
	// and no memory nodes and so cannot take a process until given some.
	cpuset bool
	// pids: the hierarchy where pids.max is enforced.
	pids bool
	// memory: the hierarchy that charges memory; v2 says which file names
	// it uses (memory.current, or v1's memory.usage_in_bytes).
	memory, v2 bool
}

// hostHierarchies lists the cgroup hierarchies mounted in this mount
// namespace.
func hostHierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	defer f.Close()
	hs, err := parseHierarchies(f, func(mp string) []string {
		b, _ := os.ReadFile(filepath.Join(mp, "cgroup.controllers"))
		return strings.Fields(string(b))
	})
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	if len(hs) == 0 {
		return nil, errors.New("no cgroup file system is mounted")
	}
	return hs, nil
}

// parseHierarchies reads mountinfo: every cgroup and cgroup2 mount of a
// hierarchy's root, once per hierarchy (a hierarchy mounted twice has one
// device number). v2Controllers lists the controllers a cgroup2 mount
// offers (a hybrid host's unified hierarchy has none).
func parseHierarchies(r io.Reader, v2Controllers func(mountpoint string) []string) ([]hierarchy, error) {
	var hs []hierarchy
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// 36 25 0:31 / /sys/fs/cgroup/pids rw,relatime shared:13 - cgroup cgroup rw,pids
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		dev, root, mp, fstype := f[2], f[3], f[4], g[0]
		if fstype != "cgroup" && fstype != "cgroup2" || root != "/" || seen[dev] {
			continue
		}
		seen[dev] = true
		h := hierarchy{dir: mp}
		if fstype == "cgroup" {
			opts := strings.Split(g[2], ",")
			h.cpuset = slices.Contains(opts, "cpuset")
			h.pids = slices.Contains(opts, "pids")
			h.memory = slices.Contains(opts, "memory")
		} else {
			cs := v2Controllers(mp)
			h.pids = slices.Contains(cs, "pids")
			h.memory, h.v2 = slices.Contains(cs, "memory"), true
		}
		hs = append(hs, h)
	}
	return hs, sc.Err()
}

// mkdir creates cgroup path in h with its missing parents. In a v1 cpuset
// hierarchy each new level gets its parent's CPUs and memory nodes, or no
// process could join it.
func (h hierarchy) mkdir(path string) error {
	if !h.cpuset {
		return os.MkdirAll(filepath.Join(h.dir, path), 0o755)
	}
	dir := h.dir
	for part := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		parent := dir
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		for _, name := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			v, err := os.ReadFile(filepath.Join(parent, name))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, name), v, 0o644); err != nil {
				return fmt.Errorf("copy %s from %s: %w", name, parent, err)
			}
		}
	}
	return nil
}
