package benchhost

import (
	"errors"
	"fmt"
	"strings"

	"github.com/podvm/podvm/bench/procmem"
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
	for _, pid := range procmem.Descendants(procs, out.Shim) {
		name := ""
		for _, pr := range procs {
			if pr.Pid == pid {
				name = pr.Name
			}
		}
		switch {
		case IsPodvm(p.Handler) && strings.HasPrefix(name, "qemu-system"):
			out.VMM = append(out.VMM, pid)
		case IsPodvm(p.Handler) && name == "virtiofsd":
			out.Virtiofsd = append(out.Virtiofsd, pid)
		default:
			out.Containers = append(out.Containers, pid)
		}
	}
	if IsPodvm(p.Handler) && len(out.VMM) == 0 {
		return out, fmt.Errorf("QEMU of pod %s (%s): %w", p.Name, p.ID, errNoProcess)
	}
	return out, nil
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
