package sandbox

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Size is the VM's shape.
type Size struct {
	VCPUs     uint32
	MemoryMiB uint32
}

// CRI annotations that carry the pod's total resources on the sandbox
// container's spec (containerd sets them for VM-based runtimes).
const (
	annotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
	annotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
)

// Bounds of a VM, whatever the spec asks: microvm's vCPU limit and the
// QEMU driver's memory limit. The host's own size is applied by FitHost.
const (
	maxVCPUs     = 255
	maxMemoryMiB = 1 << 20
)

// SizeFor computes the VM size for the first container of a sandbox: the
// configured base memory plus the pod's memory limits, and as many vCPUs as
// its CPU limits round up to (at least the base); static sizing, as Kata
// does without hot-plug. For a lone container (ctr run) its own limits count; for a CRI
// pod the sandbox annotations give the sum over the pod. Negative limits
// mean none (OCI's -1); a figure that cannot be parsed, or a size beyond
// what any VM can have, is an error rather than a silently wrapped number.
func SizeFor(s *specs.Spec, baseVCPUs, baseMemoryMiB uint32) (Size, error) {
	var memBytes, quota, period int64
	if v, ok := s.Annotations[annotationSandboxMemory]; ok {
		var err error
		if memBytes, err = parseAnnotation(annotationSandboxMemory, v); err != nil {
			return Size{}, err
		}
		if v, ok := s.Annotations[annotationSandboxCPUQuota]; ok {
			if quota, err = parseAnnotation(annotationSandboxCPUQuota, v); err != nil {
				return Size{}, err
			}
		}
		if v, ok := s.Annotations[annotationSandboxCPUPeriod]; ok {
			if period, err = parseAnnotation(annotationSandboxCPUPeriod, v); err != nil {
				return Size{}, err
			}
		}
	} else if s.Linux != nil && s.Linux.Resources != nil {
		r := s.Linux.Resources
		if r.Memory != nil && r.Memory.Limit != nil {
			memBytes = *r.Memory.Limit
		}
		if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Period <= math.MaxInt64 {
			quota, period = *r.CPU.Quota, int64(*r.CPU.Period)
		}
	}
	mem := uint64(baseMemoryMiB)
	if memBytes > 0 {
		mem += (uint64(memBytes) + 1<<20 - 1) >> 20
	}
	// CPU limits set the vCPU count (at least the base): a pod limited to
	// one CPU sees one CPU, as it would under runc with its quota. The
	// guest kernel's and agent's own CPU is host-side overhead, charged to
	// the pod cgroup and covered by the RuntimeClass's overhead.podFixed.
	// Memory limits add to the base instead: the guest kernel and agent
	// need their memory beside the containers', or a container at its
	// limit would starve them.
	cpus := uint64(baseVCPUs)
	if quota > 0 && period > 0 {
		cpus = max(cpus, (uint64(quota)+uint64(period)-1)/uint64(period))
	}
	if mem > maxMemoryMiB {
		return Size{}, fmt.Errorf("the pod VM would need %d MiB of memory (limits plus default_memory_mib); no VM can have more than %d MiB", mem, maxMemoryMiB)
	}
	if cpus > math.MaxUint32 {
		cpus = math.MaxUint32 // clamped by FitHost
	}
	return Size{VCPUs: uint32(cpus), MemoryMiB: uint32(mem)}, nil
}

func parseAnnotation(name, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("annotation %s = %q is not a number", name, v)
	}
	return n, nil
}

// Host is the size of the machine VMs run on.
type Host struct {
	CPUs      uint32
	MemoryMiB uint64
}

// ThisHost reads the CPUs this process may run on and MemTotal.
func ThisHost() (Host, error) {
	h := Host{CPUs: uint32(runtime.NumCPU())}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return h, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return h, fmt.Errorf("/proc/meminfo: MemTotal %q", v)
			}
			h.MemoryMiB = kib >> 10
			return h, nil
		}
	}
	return h, fmt.Errorf("/proc/meminfo has no MemTotal")
}

// FitHost checks a VM size against the host. More vCPUs than the host has
// CPUs are clamped to the host's count, as Kata does (a pod's CPU limit
// above the node's size is legal in Kubernetes and only caps the pod); the
// note says so. More memory than the host has is refused: a guest that
// believes it has more RAM than exists would be killed by the host's OOM
// killer instead of its container hitting its own limit.
func FitHost(s Size, h Host) (Size, string, error) {
	if h.MemoryMiB > 0 && uint64(s.MemoryMiB) > h.MemoryMiB {
		return s, "", fmt.Errorf("the pod VM would need %d MiB of memory (the pod's limits plus default_memory_mib), more than this host's %d MiB", s.MemoryMiB, h.MemoryMiB)
	}
	note := ""
	limit := min(h.CPUs, maxVCPUs)
	if limit > 0 && s.VCPUs > limit {
		note = fmt.Sprintf("the pod's CPU limits ask for %d vCPUs; the VM gets %d, the CPUs of this host", s.VCPUs, limit)
		s.VCPUs = limit
	}
	return s, note, nil
}
