package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podvm/podvm/ci/testbed"
)

// CgroupMounts lists the mount points of this host's cgroup hierarchies
// (each v1 hierarchy, and the unified one).
func CgroupMounts() []string { return testbed.CgroupMounts() }

// CgroupDirs lists the directories of cgroup path that exist, one per
// hierarchy that has it.
func CgroupDirs(path string) []string { return testbed.CgroupDirs(path) }

// CgroupLeaks names each hierarchy where cgroup path is left.
func CgroupLeaks(path string) []string { return testbed.CgroupLeaks(path) }

// MakeCgroup creates cgroup path (with parents) in every hierarchy, as the
// kubelet makes a pod cgroup, giving new v1 cpuset levels their parent's
// CPUs and memory nodes.
func MakeCgroup(path string) error { return testbed.MakeCgroup(path) }

// RemoveCgroupTree removes cgroup path and every cgroup below it from every
// hierarchy, deepest first; for a test's cleanup of the pod cgroups it
// made. Errors are returned, not retried for long.
func RemoveCgroupTree(path string) error {
	if err := testbed.RemoveCgroupTree(path, time.Second); err != nil {
		return fmt.Errorf("remove cgroups: %w", err)
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
