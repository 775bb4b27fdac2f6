package testenv

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

// CgroupMounts lists the mount points of this host's cgroup hierarchies
// (each v1 hierarchy, and the unified one).
func CgroupMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fs, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(fs) >= 5 && len(g) >= 1 && (g[0] == "cgroup" || g[0] == "cgroup2") && fs[3] == "/" {
			out = append(out, fs[4])
		}
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
		out = append(out, fmt.Sprintf("host cgroup: %s (processes: %s)", dir, readTrim(filepath.Join(dir, "cgroup.procs"))))
	}
	return out
}

// MakeCgroup creates cgroup path (with parents) in every hierarchy, as the
// kubelet makes a pod cgroup, giving new v1 cpuset levels their parent's
// CPUs and memory nodes.
func MakeCgroup(path string) error {
	for _, mp := range CgroupMounts() {
		dir := mp
		for part := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return err
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if cur, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(cur)) == "" {
					v, _ := os.ReadFile(filepath.Join(parent, f))
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
					}
				}
			}
		}
	}
	return nil
}

// RemoveCgroupTree removes cgroup path and every cgroup below it from every
// hierarchy, deepest first; for a test's cleanup of the pod cgroups it
// made. Errors are returned, not retried for long.
func RemoveCgroupTree(path string) error {
	var dirs []string
	for _, top := range CgroupDirs(path) {
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
		for range 20 {
			if err = syscall.Rmdir(d); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", d, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("remove cgroups: %s", strings.Join(failed, "; "))
	}
	return nil
}

// ProcCgroups parses /proc/<pid>/cgroup into hierarchy (its controller
// list, "" for the unified one) -> path.
func ProcCgroups(pid int) (map[string]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out, nil
}

// VMProcesses finds the host processes of the pod VM whose state directory
// names id: QEMU and virtiofsd, by executable name.
func VMProcesses(id string) (qemu, virtiofsd []int) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 || !strings.Contains(string(b), id) {
			continue
		}
		exe := filepath.Base(strings.SplitN(string(b), "\x00", 2)[0])
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		switch {
		case strings.HasPrefix(exe, "qemu-system"):
			qemu = append(qemu, pid)
		case exe == "virtiofsd":
			virtiofsd = append(virtiofsd, pid)
		}
	}
	return qemu, virtiofsd
}

// Threads counts the threads of process pid (0 if it is gone).
func Threads(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return len(ents)
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	if s := strings.Join(strings.Fields(string(b)), " "); s != "" {
		return s
	}
	return "none"
}

// ParentPid is the parent of process pid (0 if it is gone).
func ParentPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
