package vmm

import (
	"path/filepath"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// Guest is what every driver's launch plan holds about the guest: which
// sandbox, where its files go, what it boots and its size. A driver's own
// plan embeds it beside its own fields.
type Guest struct {
	ID        string
	StateDir  string
	Kernel    string
	Initrd    string
	Cmdline   string
	VCPUs     uint32
	MemoryMiB uint32
}

// GuestOf is the guest cfg describes, booted with cmdline.
func GuestOf(cfg hypervisor.Config, cmdline string) Guest {
	return Guest{
		ID: cfg.ID, StateDir: cfg.StateDir,
		Kernel: cfg.KernelPath, Initrd: cfg.InitrdPath, Cmdline: cmdline,
		VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB,
	}
}

// Path is name in the guest's state dir.
func (g Guest) Path(name string) string { return filepath.Join(g.StateDir, name) }
