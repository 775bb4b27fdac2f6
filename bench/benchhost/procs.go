package benchhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/podvm/podvm/bench/procmem"
	"github.com/podvm/podvm/internal/hostbed"
)

// errNoProcess is returned when a pod's process is not found.
var errNoProcess = errors.New("process not found")

// PodProcesses are the host processes of one pod.
type PodProcesses struct {
	Shim int
	// VMM and Virtiofsd are a podvm pod's QEMU and virtiofsd.
	VMM, Virtiofsd []int
	// Containers are the shim's other descendants: a runc pod's pause and
	// container processes, a runsc pod's sandbox, gofer and their children.
	Containers []int
}

// Processes finds pod p's host processes: its shim (the one serving the
// pod's sandbox id for this containerd), and what that shim started.
func (h *Host) Processes(p *Pod) (PodProcesses, error) {
	procs := procmem.List()
	var out PodProcesses
	for _, pr := range procs {
		if strings.HasPrefix(pr.Name, "containerd-shim-") && argValue(pr.Args, "-id") == p.ID &&
			strings.HasPrefix(argValue(pr.Args, "-address"), h.Dir+"/") {
			out.Shim = pr.Pid
		}
	}
	if out.Shim == 0 {
		return out, fmt.Errorf("shim of pod %s (%s): %w", p.Name, p.ID, errNoProcess)
	}
	names := make(map[int]string, len(procs))
	for _, pr := range procs {
		names[pr.Pid] = pr.Name
	}
	for _, pid := range procmem.Descendants(procs, out.Shim) {
		if !out.addVMProcess(p, pid, names[pid]) {
			out.Containers = append(out.Containers, pid)
		}
	}
	if IsPodvm(p.Handler) && len(out.VMM) == 0 {
		// A cached VM's QEMU and virtiofsd are the factory daemon's
		// children, not the shim's; the shim moved them into the pod's
		// host cgroup when it adopted the VM.
		for _, pid := range cgroupTreePids(p.Cgroup) {
			out.addVMProcess(p, pid, names[pid])
		}
	}
	if IsPodvm(p.Handler) && len(out.VMM) == 0 {
		return out, fmt.Errorf("QEMU of pod %s (%s): %w", p.Name, p.ID, errNoProcess)
	}
	return out, nil
}

// addVMProcess files pid as pod p's VMM or virtiofsd by its name, once,
// and says whether it was one.
func (out *PodProcesses) addVMProcess(p *Pod, pid int, name string) bool {
	var list *[]int
	switch {
	case IsPodvm(p.Handler) && strings.HasPrefix(name, "qemu-system"):
		list = &out.VMM
	case IsPodvm(p.Handler) && name == "virtiofsd":
		list = &out.Virtiofsd
	default:
		return false
	}
	if !slices.Contains(*list, pid) {
		*list = append(*list, pid)
	}
	return true
}

// cgroupTreePids lists the processes of host cgroup path and of its
// descendants, in the first hierarchy that has it.
func cgroupTreePids(path string) []int {
	dirs := hostbed.CgroupDirs(path)
	if len(dirs) == 0 {
		return nil
	}
	var pids []int
	_ = filepath.WalkDir(dirs[0], func(dir string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// CgroupChargeMiB is the memory charged to pod p's host cgroup.
func (h *Host) CgroupChargeMiB(p *Pod) (float64, error) { return memoryChargeMiB(p.Cgroup) }

// argValue is the value after flag in args ("" if absent).
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}
