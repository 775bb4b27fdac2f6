// Package drivers chooses the hypervisor driver the podvm configuration
// names and hands it its settings. It is the one place that knows every
// driver; the sandbox, the shim and `podvm check` take a hypervisor.Driver.
package drivers

import (
	"fmt"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/cloudhypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/qemu"
)

// New returns the hypervisor driver the configuration selects.
func New(cfg *config.Config) (hypervisor.Driver, error) {
	h := cfg.Hypervisor
	switch h.Driver {
	case "qemu":
		return qemu.New(qemu.Options{
			QEMUPath:             h.QEMU.Path,
			VirtiofsdPath:        h.QEMU.VirtiofsdPath,
			VhostDeviceVsockPath: h.QEMU.VhostDeviceVsockPath,
			TBSizeMiB:            h.QEMU.TCGTBSizeMiB,
			Accelerator:          hypervisor.Accelerator(h.Accelerator),
			Jail:                 qemu.JailOptions{Off: !h.QEMU.Jail, UIDBase: h.QEMU.JailUIDBase, UIDCount: h.QEMU.JailUIDCount},
		}), nil
	case cloudhypervisor.Name:
		c := h.CloudHypervisor
		return cloudhypervisor.New(cloudhypervisor.Options{
			Path:             c.Path,
			VirtiofsdPath:    c.VirtiofsdPath,
			MaxVCPUs:         c.MaxVCPUs,
			MemoryHotplugMiB: c.MemoryHotplugMiB,
			Accelerator:      hypervisor.Accelerator(h.Accelerator),
		}), nil
	default:
		return nil, fmt.Errorf("hypervisor.driver = %q: unknown driver (known: qemu, %s)", h.Driver, cloudhypervisor.Name)
	}
}
