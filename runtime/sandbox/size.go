package sandbox

import (
	"strconv"

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

// SizeFor computes the VM size for the first container of a sandbox: the
// configured base plus the pod's limits (static sizing, as Kata does without
// hot-plug). For a lone container (ctr run) its own limits count; for a CRI
// pod the sandbox annotations give the sum over the pod.
func SizeFor(s *specs.Spec, baseVCPUs, baseMemoryMiB uint32) Size {
	size := Size{VCPUs: baseVCPUs, MemoryMiB: baseMemoryMiB}
	var memBytes, quota, period int64
	if v, ok := s.Annotations[annotationSandboxMemory]; ok {
		memBytes, _ = strconv.ParseInt(v, 10, 64)
		quota, _ = strconv.ParseInt(s.Annotations[annotationSandboxCPUQuota], 10, 64)
		period, _ = strconv.ParseInt(s.Annotations[annotationSandboxCPUPeriod], 10, 64)
	} else if s.Linux != nil && s.Linux.Resources != nil {
		r := s.Linux.Resources
		if r.Memory != nil && r.Memory.Limit != nil {
			memBytes = *r.Memory.Limit
		}
		if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
			quota, period = *r.CPU.Quota, int64(*r.CPU.Period)
		}
	}
	if memBytes > 0 {
		size.MemoryMiB += uint32((memBytes + 1<<20 - 1) >> 20)
	}
	if quota > 0 && period > 0 {
		size.VCPUs += uint32((quota + period - 1) / period)
	}
	return size
}
