package result

import "github.com/podvm/podvm/bench/stats"

// Density is `podvm bench density`: idle pods (a sandbox and one sleeping
// container) started one after another through CRI until the requested
// number or the first failure, with the host memory each one costs.
type Density struct {
	Handlers []HandlerDensity `json:"handlers"`
}

// HandlerDensity is one handler's climb.
type HandlerDensity struct {
	Handler     string `json:"handler"`
	Runtime     string `json:"runtime"`
	Accelerator string `json:"accelerator,omitempty"`
	Requested   int    `json:"requested"`
	// Reached is the largest number of pods that ran at once.
	Reached int `json:"reached"`
	// Failure is why the climb stopped before Requested ("" if it did not).
	Failure string `json:"failure,omitempty"`
	// StartMs summarizes each pod's start (RunPodSandbox to StartContainer
	// returned) as the host filled up.
	StartMs      stats.Summary `json:"start_ms"`
	StartSamples []float64     `json:"start_samples_ms"`
	// Points are memory measurements at growing pod counts; the last one
	// is at Reached, after the pods settled.
	Points []DensityPoint `json:"points"`
}

// DensityPoint is the memory of every pod running at one moment.
type DensityPoint struct {
	Pods int `json:"pods"`
	// PerPod is the mean over the pods.
	PerPod PodMemory `json:"per_pod_mean"`
	// ShimPSS and HostOverhead summarize the pods one by one.
	ShimPSS      stats.Summary `json:"shim_pss_mib"`
	HostOverhead stats.Summary `json:"host_overhead_mib"`
	// MemAvailableDropMiB is the fall of the host's MemAvailable since
	// before the first pod, divided by Pods: a cross-check that includes
	// the kernel's own costs (page tables, containerd) and anything else
	// running on the host meanwhile.
	MemAvailableDropPerPodMiB float64 `json:"mem_available_drop_per_pod_mib"`
	// IdleCPUMillicoresPerPod is the CPU the pods' host processes (shim,
	// VMM, virtiofsd, containers) used while idle, per pod, over the settle
	// time before the last point; 0 at the other points.
	IdleCPUMillicoresPerPod float64 `json:"idle_cpu_millicores_per_pod"`
	// IdleCPUByPart splits IdleCPUMillicoresPerPod by process (nil with
	// it at 0).
	IdleCPUByPart *IdleCPU `json:"idle_cpu_millicores_per_pod_by_part,omitempty"`
}

// IdleCPU is the host CPU of idle pods by process, in millicores per pod.
// The VMM is split into its vCPU threads (the guest's own work, and under
// TCG its emulation) and the rest: QEMU's main loop, which runs the
// emulated devices and timers, and its other threads.
type IdleCPU struct {
	Shim       float64 `json:"shim"`
	VMMVCPU    float64 `json:"vmm_vcpu"`
	VMMOther   float64 `json:"vmm_other"`
	Virtiofsd  float64 `json:"virtiofsd"`
	Containers float64 `json:"containers"`
}

// Total is the sum of the parts.
func (c IdleCPU) Total() float64 {
	return c.Shim + c.VMMVCPU + c.VMMOther + c.Virtiofsd + c.Containers
}

// Scale multiplies every part by f.
func (c IdleCPU) Scale(f float64) IdleCPU {
	return IdleCPU{Shim: c.Shim * f, VMMVCPU: c.VMMVCPU * f, VMMOther: c.VMMOther * f,
		Virtiofsd: c.Virtiofsd * f, Containers: c.Containers * f}
}

// Sub is c less o, part by part.
func (c IdleCPU) Sub(o IdleCPU) IdleCPU {
	return IdleCPU{Shim: c.Shim - o.Shim, VMMVCPU: c.VMMVCPU - o.VMMVCPU, VMMOther: c.VMMOther - o.VMMOther,
		Virtiofsd: c.Virtiofsd - o.Virtiofsd, Containers: c.Containers - o.Containers}
}

// PodMemory is the host memory of one pod, in MiB of PSS unless named
// otherwise. For runc pods only ShimPSS, ContainersPSS, Total and
// HostOverhead are set.
type PodMemory struct {
	ShimPSS float64 `json:"shim_pss_mib"`
	// VMMPSS is QEMU's whole PSS; its parts follow.
	VMMPSS         float64 `json:"vmm_pss_mib"`
	VMMGuestRAMPSS float64 `json:"vmm_guest_ram_pss_mib"`
	// VMMTCGCachePSS is QEMU's TCG translation cache (-accel tcg,tb-size).
	VMMTCGCachePSS float64 `json:"vmm_tcg_cache_pss_mib"`
	// VMMImagesPSS is the guest kernel and initramfs QEMU keeps mapped
	// (page cache shared by every VM: PSS divides it among them).
	VMMImagesPSS float64 `json:"vmm_images_pss_mib"`
	VMMOtherPSS  float64 `json:"vmm_other_pss_mib"`
	// VirtiofsdPSS is virtiofsd's whole PSS; VirtiofsdGuestRAMPSS is its
	// share of the guest RAM it maps to serve the guest.
	VirtiofsdPSS         float64 `json:"virtiofsd_pss_mib"`
	VirtiofsdGuestRAMPSS float64 `json:"virtiofsd_guest_ram_pss_mib"`
	// ContainersPSS is a runc pod's container processes (pause and the
	// container's), which a podvm pod has in its guest RAM instead.
	ContainersPSS float64 `json:"containers_pss_mib"`
	// GuestRAMTouched is how much of the VM's memfd is allocated: guest RAM
	// the guest has actually used, whatever process maps it.
	GuestRAMTouched float64 `json:"guest_ram_touched_mib"`
	// Total is the PSS of all of the pod's host processes.
	Total float64 `json:"total_pss_mib"`
	// HostOverhead is Total less guest RAM: what the pod costs the host
	// beyond the memory its guest uses. HostOverheadExclTCG further leaves
	// out the TCG translation cache, which a KVM host does not have.
	HostOverhead        float64 `json:"host_overhead_mib"`
	HostOverheadExclTCG float64 `json:"host_overhead_excl_tcg_mib"`
	// CgroupCharge is the memory the kernel charges to the pod's host
	// cgroup (the VMM and virtiofsd are in it; the shim is not): what the
	// kubelet's pod limit and the RuntimeClass overhead are held against.
	CgroupCharge float64 `json:"cgroup_charge_mib"`
}
