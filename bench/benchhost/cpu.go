package benchhost

import (
	"os"
	"strings"

	"github.com/podvm/podvm/bench/cpuuse"
	"github.com/podvm/podvm/bench/result"
)

// The components of the bench host's CPU time (CPUUse), in the order
// reported.
const (
	// CPUVCPUs are the pods' QEMU vCPU threads: the guests' own work
	// (under TCG, the translated guest code and its translation).
	CPUVCPUs = "vm_vcpus"
	// CPUQEMUOther are the pods' QEMU other threads: the main loop
	// (devices, monitor, timers), I/O and RCU threads.
	CPUQEMUOther = "vm_qemu_other"
	// CPUHelpers are the pods' virtiofsd and other VM helpers (a process
	// in a pod's host cgroup naming the podvm state directory).
	CPUHelpers = "vm_helpers"
	// CPUContainers are other processes in the pods' host cgroups (a
	// runc pod's containers).
	CPUContainers = "pod_containers"
	// CPUPool are QEMU and helpers of VMs no pod holds: the cache's pool
	// and the refill's boots.
	CPUPool = "pool_vms"
	// CPUShims are the shims, and the children they waited for.
	CPUShims = "shims"
	// CPUContainerd is containerd itself; CPUContainerdChildren the
	// children it waited for (CNI plugins, the shims' start commands).
	CPUContainerd         = "containerd"
	CPUContainerdChildren = "containerd_children"
	// CPUFactoryDaemon is `podvm factory serve` (cache mode), with the
	// children it waited for.
	CPUFactoryDaemon = "factory_daemon"
	// CPUBench is this process: the CRI client and the log polling.
	CPUBench = "bench"
)

// CPUComponents is the order CPUUse reports components in.
var CPUComponents = []string{CPUVCPUs, CPUQEMUOther, CPUHelpers, CPUContainers, CPUPool, CPUShims,
	CPUContainerd, CPUContainerdChildren, CPUFactoryDaemon, CPUBench, cpuuse.Rest, cpuuse.Idle}

// CPUSnapshot reads the host's CPU times now (QEMU's per thread).
func (h *Host) CPUSnapshot() (*cpuuse.Snapshot, error) {
	return cpuuse.Take(isQEMU)
}

// CPUUse is the CPU time of each of the host's components between two
// snapshots.
func (h *Host) CPUUse(before, after *cpuuse.Snapshot) cpuuse.Seconds {
	return cpuuse.Diff(before, after, h.classifyCPU)
}

// CPUResult is the result form of seconds spent while pods started in
// windows lasting windowMs in all.
func CPUResult(s cpuuse.Seconds, pods int, windowMs float64) *result.CPUUse {
	out := &result.CPUUse{Pods: pods, WindowMs: windowMs}
	for _, name := range CPUComponents {
		c := result.CPUComponent{Name: name, Seconds: s[name]}
		if pods > 0 {
			c.PerPodSeconds = s[name] / float64(pods)
		}
		out.Components = append(out.Components, c)
	}
	return out
}

func isQEMU(name string) bool { return strings.HasPrefix(name, "qemu-system") }

// isVCPU names QEMU's vCPU threads (-name ...,debug-threads=on: "CPU 0/TCG").
func isVCPU(thread string) string {
	if strings.HasPrefix(thread, "CPU ") {
		return CPUVCPUs
	}
	return ""
}

// classifyCPU names the component of process p ("": not the bench's).
func (h *Host) classifyCPU(p cpuuse.Proc) cpuuse.Class {
	inPod := strings.HasPrefix(p.Cgroup, h.cgroupRoot+"/")
	vm := namesDir(p.Args, StateDir)
	switch {
	case p.Pid == os.Getpid():
		return cpuuse.Class{Name: CPUBench}
	case h.cacheD != nil && p.Pid == h.cacheD.cmd.Process.Pid:
		return cpuuse.Class{Name: CPUFactoryDaemon}
	case isQEMU(p.Name) && inPod:
		return cpuuse.Class{Name: CPUQEMUOther, Threads: isVCPU}
	case inPod && (vm || p.Name == "virtiofsd"):
		return cpuuse.Class{Name: CPUHelpers}
	case inPod:
		return cpuuse.Class{Name: CPUContainers}
	case vm: // a podvm VM's process outside every pod: the pool's
		return cpuuse.Class{Name: CPUPool}
	case strings.HasPrefix(p.Name, "containerd-shim") && namesDir(p.Args, h.Dir):
		return cpuuse.Class{Name: CPUShims}
	case p.Name == "containerd" && namesDir(p.Args, h.Dir):
		return cpuuse.Class{Name: CPUContainerd, ChildrenName: CPUContainerdChildren}
	}
	return cpuuse.Class{}
}

// namesDir says whether an argument is in dir or names a path below it.
func namesDir(args []string, dir string) bool {
	for _, a := range args {
		if strings.Contains(a, dir+"/") {
			return true
		}
	}
	return false
}
