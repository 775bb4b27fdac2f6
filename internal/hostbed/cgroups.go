package hostbed

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Hierarchy is one mounted cgroup hierarchy.
type Hierarchy struct {
	Mount string
	V2    bool
	// Memory: the hierarchy that accounts memory (v1's memory controller,
	// or the unified hierarchy on a v2-only host).
	Memory bool
}

// ParseHierarchies reads /proc/self/mountinfo text: the cgroup and cgroup2
// mounts of a hierarchy's root (a bind mount of a cgroup below it is
// passed over).
func ParseHierarchies(mountinfo string) []Hierarchy {
	var out []Hierarchy
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
			out = append(out, Hierarchy{Mount: fs[4], Memory: mem})
		case "cgroup2":
			out = append(out, Hierarchy{Mount: fs[4], V2: true})
		}
	}
	// On a v2-only host the unified hierarchy accounts memory.
	hasV1Memory := false
	for _, h := range out {
		hasV1Memory = hasV1Memory || h.Memory
	}
	if !hasV1Memory {
		for i := range out {
			out[i].Memory = out[i].V2
		}
	}
	return out
}

// Hierarchies are this host's mounted cgroup hierarchies.
func Hierarchies() []Hierarchy {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return ParseHierarchies(string(b))
}

// CgroupMounts lists the mount points of this host's cgroup hierarchies
// (each v1 hierarchy, and the unified one).
func CgroupMounts() []string {
	var out []string
	for _, h := range Hierarchies() {
		out = append(out, h.Mount)
	}
	return out
}

// CgroupDirs lists the directories of cgroup path that exist, one per
// hierarchy that has it.
func CgroupDirs(path string) []string {
	var out []string
	for _, mp := range CgroupMounts() {
		dir := filepath.Join(mp, path)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			out = append(out, dir)
		}
	}
	return out
}

// CgroupLeaks names each hierarchy where cgroup path is left.
func CgroupLeaks(path string) []string {
	var out []string
	for _, dir := range CgroupDirs(path) {
		out = append(out, cgroupLeak(dir))
	}
	return out
}

func cgroupLeak(dir string) string {
	return fmt.Sprintf("host cgroup: %s (processes: %s)", dir, readTrim(filepath.Join(dir, "cgroup.procs")))
}

// MakeCgroup creates cgroup path (with parents) in every hierarchy, as the
// kubelet makes a pod cgroup, giving new v1 cpuset levels their parent's
// CPUs and memory nodes. It returns the directories it created, parents
// first (the kubelet refuses a cgroupRoot that does not exist, and the
// local cluster removes what it made).
func MakeCgroup(path string) (created []string, err error) {
	for _, mp := range CgroupMounts() {
		dir := mp
		for part := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
			if part == "" {
				continue
			}
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err == nil {
				created = append(created, dir)
			} else if !os.IsExist(err) {
				return created, fmt.Errorf("make cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if cur, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(cur)) == "" {
					v, _ := os.ReadFile(filepath.Join(parent, f))
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return created, fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
					}
				}
			}
		}
	}
	return created, nil
}

// RemoveCgroupTree removes cgroup path and every cgroup below it from every
// hierarchy, deepest first, retrying each for up to wait (its last
// processes may still be exiting). A cgroup that still holds a process
// cannot be removed: the error names it and its processes.
func RemoveCgroupTree(path string, wait time.Duration) error {
	return RemoveCgroupDirs(CgroupDirs(path), wait)
}

// RemoveCgroupDirs is RemoveCgroupTree for cgroup directories given by
// their full paths (under a hierarchy's mount point).
func RemoveCgroupDirs(tops []string, wait time.Duration) error {
	var dirs []string
	for _, top := range tops {
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.SliceStable(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	const pause = 50 * time.Millisecond
	attempts := max(1, int(wait/pause))
	var failed []string
	for _, d := range dirs {
		var err error
		for range attempts {
			if err = syscall.Rmdir(d); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(pause)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("host cgroup %s: %v (processes: %s)", d, err, readTrim(filepath.Join(d, "cgroup.procs"))))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}

// readTrim is a small file's content on one line ("none" if empty).
func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	if s := strings.Join(strings.Fields(string(b)), " "); s != "" {
		return s
	}
	return "none"
}
