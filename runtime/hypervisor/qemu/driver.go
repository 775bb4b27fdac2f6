// Package qemu is the QEMU driver: a microvm machine booting the guest kernel
// (PVH vmlinux) straight into the initramfs, virtio-mmio devices only, QMP
// for control.
//
// Files, one job each: driver.go (options, Create and its validation),
// cmdline.go (QEMU and kernel command lines, pure functions), vm.go
// (start and stop: QEMU's own part; the processes, their supervision and
// their stop are package vmm's), agent.go (DialAgent), hybridvsock.go
// (the agent channel's choice, vhost-device-vsock and its dialing),
// vsock.go (kernel vhost-vsock: CIDs and AF_VSOCK), qmp.go (QMP client), tsc.go (host TSC rate for TCG
// guests), check.go (`podvm check`), template*.go (VM templates,
// docs/factory.md: the role and its files, save, restore, the hand-over
// and its kept session, the key).
//
// Decisions:
//   - The accelerator is probed (package accel), never assumed from
//     /dev/kvm existing: kvm_pvm hosts get TCG with -cpu max.
//   - virtiofsd and QEMU start side by side: the vhost-user socket is bound
//     by us before either runs (package virtiofsd).
//   - The agent's channel is hybrid vsock when vhost-device-vsock is
//     found, else virtio-serial (hybridvsock.go has the order and why).
//   - QEMU and its helpers (virtiofsd, vhost-device-vsock) are children of
//     the shim and die with it (see package vmm).
//   - Start returns when QMP answers query-status with "running"; the guest
//     is booting then, and DialAgent tells when its agent is reachable.
//   - Resize is not supported: VMs are sized statically at creation.
package qemu

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/accel"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

// Options are the driver's host-wide settings (from the podvm config file).
// Zero values mean the documented defaults.
type Options struct {
	// QEMUPath is the qemu-system-x86_64 binary; default: found on PATH.
	QEMUPath string
	// VirtiofsdPath is the virtiofsd binary; default: virtiofsd.DefaultPaths.
	VirtiofsdPath string
	// VhostDeviceVsockPath is vhost-device-vsock, which makes the agent's
	// channel hybrid vsock; default: <prefix>/libexec/podvm/ of the
	// install, then PATH (vmm.FindHybridVsock). Not found: virtio-serial.
	VhostDeviceVsockPath string
	// VirtiofsCache is virtiofsd's cache mode: auto (default), always, none.
	VirtiofsCache string
	// VirtiofsdExtraArgs are appended to virtiofsd's command line, e.g.
	// ["-o", "xattr"] for file capabilities in container images.
	VirtiofsdExtraArgs []string
	// TBSizeMiB is TCG's translation cache per VM, default 64. Smaller saves
	// host memory, larger re-translates less.
	TBSizeMiB uint32
	// NoSeccomp turns off QEMU's seccomp filter (-sandbox on,...), for
	// QEMU builds without seccomp or for debugging.
	NoSeccomp bool
	// Jail is QEMU's per-VM uid and what it may reach (jail.go).
	Jail JailOptions
	// Accelerator is the default (auto, kvm, tcg; empty is auto) for VMs
	// whose Config does not force one.
	Accelerator hypervisor.Accelerator
	// ConsoleMaxBytes caps console.log and console.log.1 each; default
	// caplog.DefaultMaxBytes (1 MiB).
	ConsoleMaxBytes int64
}

// Defaults.
const (
	DefaultTBSizeMiB = 64
	qemuBinaryName   = "qemu-system-x86_64"
)

// Limits checked by Create. microvm has no hotplug, so these are the VM's
// whole size; the memory floor is what our kernel and initramfs need.
const (
	minMemoryMiB = 64
	maxMemoryMiB = 1 << 20 // 1 TiB
	maxVCPUs     = 255     // microvm's x2APIC-less limit
)

// Driver creates QEMU microvm VMs.
type Driver struct {
	opts Options

	// The accelerator probe creates a KVM VM; once per driver is enough.
	probeOnce sync.Once
	facts     accel.Facts
}

// decideAccel applies the configured choice to this host's (cached) probe
// and returns kvm or tcg with the reason.
func (d *Driver) decideAccel(want hypervisor.Accelerator) (hypervisor.Accelerator, string, error) {
	if want == hypervisor.AccelTCG {
		return accel.Decide(want, accel.Facts{})
	}
	d.probeOnce.Do(func() { d.facts = accel.Probe() })
	return accel.Decide(want, d.facts)
}

// New returns a driver with opts (zero fields defaulted).
func New(opts Options) *Driver {
	if opts.TBSizeMiB == 0 {
		opts.TBSizeMiB = DefaultTBSizeMiB
	}
	return &Driver{opts: opts}
}

// Name is the driver's config name.
func (d *Driver) Name() string { return "qemu" }

var _ hypervisor.Driver = (*Driver)(nil)

// Create validates cfg and prepares a VM; nothing is started and no host
// resource is taken, so an unused VM needs no Stop (calling it is harmless).
func (d *Driver) Create(ctx context.Context, cfg hypervisor.Config) (hypervisor.VM, error) {
	var tpl *templateRole
	if cfg.Template != "" {
		var err error
		if cfg, err = templateLaunch(cfg); err != nil {
			return nil, fmt.Errorf("qemu: sandbox %s: %w", cfg.ID, err)
		}
		if tpl, err = loadTemplate(cfg.Template); err != nil {
			return nil, fmt.Errorf("qemu: sandbox %s: %w", cfg.ID, err)
		}
	}
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("qemu: sandbox %s: %w", cfg.ID, err)
	}
	qemuPath, err := d.qemuBinary()
	if err != nil {
		return nil, fmt.Errorf("qemu: sandbox %s: %w", cfg.ID, err)
	}
	if cfg.SharedFS == "" {
		cfg.SharedFS = contract.SharedFSVirtiofs
	}
	want := cfg.Accelerator
	if want == "" {
		want = d.opts.Accelerator
	}
	if want, err = hypervisor.ParseAccelerator(string(want)); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	ch, err := d.chooseChannel(cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("qemu: sandbox %s: %w", cfg.ID, err)
	}
	if ch.HybridVsock != "" {
		// Only hybrid vsock binds this one; it is the longest path.
		if err := vmm.CheckSocketPaths(cfg.StateDir, []string{vmm.HybridVsockVhostSocket}); err != nil {
			return nil, fmt.Errorf("qemu: sandbox %s: %w", cfg.ID, err)
		}
	}
	v := newVM(d, qemuPath, cfg, want)
	v.tpl = tpl
	return v, nil
}

// qemuBinary resolves Options.QEMUPath or finds QEMU on PATH.
func (d *Driver) qemuBinary() (string, error) {
	return vmm.FindBinary(d.opts.QEMUPath, qemuBinaryName, "qemu",
		"install qemu-system-x86 (apt-get install qemu-system-x86) or set [hypervisor.qemu] path in the podvm config")
}

// validate checks what can be checked before anything starts, with errors
// that say what to do.
func validate(cfg hypervisor.Config) error {
	// The longest of the socket paths QEMU and virtiofsd bind.
	lim := vmm.Limits{MinMemoryMiB: minMemoryMiB, MaxMemoryMiB: maxMemoryMiB, MaxVCPUs: maxVCPUs}
	if err := vmm.ValidateCommon(cfg, []string{virtiofsdSocketName}, lim); err != nil {
		return err
	}
	switch cfg.SharedFS {
	case "", contract.SharedFSVirtiofs, contract.SharedFS9p:
	default:
		return fmt.Errorf("shared_fs %q: want virtiofs or 9p", cfg.SharedFS)
	}
	if err := vmm.ValidateSharedDir(cfg); err != nil {
		return err
	}
	switch cfg.Transport {
	case "", contract.TransportVsock, contract.TransportSerial:
	default:
		return fmt.Errorf("agent transport %q: want vsock or serial", cfg.Transport)
	}
	if _, err := hypervisor.ParseAccelerator(string(cfg.Accelerator)); err != nil {
		return err
	}
	return nil
}

// virtiofsdConfig maps driver options onto the virtiofsd package.
func (o Options) virtiofsdConfig(cfg hypervisor.Config, dir string) virtiofsd.Config {
	return virtiofsd.Config{
		Name:       "virtiofsd for sandbox " + cfg.ID,
		Binary:     o.VirtiofsdPath,
		SocketPath: filepath.Join(dir, virtiofsdSocketName),
		SharedDir:  cfg.SharedDir,
		Cache:      o.VirtiofsCache,
		ExtraArgs:  o.VirtiofsdExtraArgs,
		LogPath:    filepath.Join(dir, "virtiofsd.log"),
		Cgroup:     cfg.Cgroup,
		AllowSetID: cfg.AllowGuestSetID,
	}
}

// proxy9pConfig is a clone's 9p proxy helper: virtiofsd's settings for the
// share (cgroup, set-id filter), its own name and log.
func (o Options) proxy9pConfig(cfg hypervisor.Config, dir string) virtiofsd.Config {
	c := o.virtiofsdConfig(cfg, dir)
	c.Name, c.Binary, c.LogPath = "9p proxy helper for sandbox "+cfg.ID, "", filepath.Join(dir, proxy9pLogName)
	return c
}
