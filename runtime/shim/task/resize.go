package task

import (
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/sandbox"
)

// fitsVM refuses a resize the pod's VM cannot hold: a memory limit above
// the VM's memory or a CPU limit (quota over period, rounded up) above its
// vCPUs. Neither driver grows a running VM (docs/design.md, "Static
// sizing"), so applying such a limit in the guest would report a resize as
// done that the container can never use; the error names both sizes and
// the kubelet reports the resize as failed. Lowering always fits.
func fitsVM(id string, r *specs.LinuxResources, vm sandbox.Size) error {
	if r.Memory != nil && r.Memory.Limit != nil {
		if limit, vmBytes := *r.Memory.Limit, int64(vm.MemoryMiB)<<20; limit > vmBytes {
			return fmt.Errorf("resize of %s to a memory limit of %d bytes (%d MiB): the pod VM has %d MiB and cannot grow: %w",
				id, limit, mibCeil(limit), vm.MemoryMiB, errdefs.ErrResourceExhausted)
		}
	}
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Quota > 0 && *r.CPU.Period > 0 {
		quota, period := uint64(*r.CPU.Quota), *r.CPU.Period
		if cpus := (quota + period - 1) / period; cpus > uint64(vm.VCPUs) {
			return fmt.Errorf("resize of %s to a CPU limit of %d CPUs (quota %d, period %d): the pod VM has %d vCPUs and cannot grow: %w",
				id, cpus, quota, period, vm.VCPUs, errdefs.ErrResourceExhausted)
		}
	}
	return nil
}

func mibCeil(bytes int64) int64 { return (bytes + 1<<20 - 1) >> 20 }
