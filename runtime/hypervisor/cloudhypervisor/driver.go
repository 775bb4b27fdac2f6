// Package cloudhypervisor is the Cloud Hypervisor driver: one
// `cloud-hypervisor --api-socket` process per pod VM, configured and driven
// over its REST API, booting the guest kernel (PVH vmlinux) straight into the
// initramfs, with virtio-fs from virtiofsd and the agent channel over
// Cloud Hypervisor's hybrid vsock.
//
// Files, one job each, named as in the qemu driver: driver.go (options,
// Create and its validation), cmdline.go (process arguments, kernel command
// line and the VmConfig, pure functions), vm.go (start and stop: Cloud
// Hypervisor's own part, the processes being package vmm's; resize),
// agent.go (DialAgent, through package hvsock's hybrid vsock dialer),
// api.go (REST client over the unix socket), events.go
// (the --event-monitor stream), check.go (`podvm check`).
//
// Decisions (docs/cloud-hypervisor.md has the reasons):
//   - Hardware KVM only: Cloud Hypervisor has no software emulation, so a
//     host whose accelerator probe says no KVM (or a forced tcg) is refused
//     at Create with the reason and the qemu driver as the fix.
//   - The VM is created and booted over the API, not from command-line
//     flags: every field the driver sends is checked in tests against the
//     OpenAPI description of Cloud Hypervisor v53.0.
//   - Guest RAM is shared (memory.shared): virtiofsd maps it.
//   - Taps are passed as fds with SCM_RIGHTS on vm.add-net: Cloud
//     Hypervisor runs in the shim's network namespace, the taps live in the
//     pod's, so naming a tap would find (or create) the wrong one.
//   - A guest reboot or panic does not end a Cloud Hypervisor process (it
//     restarts the guest); the event monitor reports it and the driver
//     treats it as the VM's death, as QEMU's -no-reboot does.
package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/accel"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

// Name is the driver's config name (hypervisor.driver).
const Name = "cloud-hypervisor"

// binaryName is looked up on PATH when Options.Path is empty.
const binaryName = "cloud-hypervisor"

// Options are the driver's host-wide settings (from the podvm config file).
// Zero values mean the documented defaults.
type Options struct {
	// Path is the cloud-hypervisor binary; default: found on PATH.
	Path string
	// VirtiofsdPath is the virtiofsd binary; default: virtiofsd.DefaultPaths.
	VirtiofsdPath string
	// VirtiofsCache is virtiofsd's cache mode: auto (default), always, none.
	VirtiofsCache string
	// VirtiofsdExtraArgs are appended to virtiofsd's command line.
	VirtiofsdExtraArgs []string
	// Accelerator is auto (default) or kvm. tcg is refused: Cloud
	// Hypervisor cannot emulate a CPU.
	Accelerator hypervisor.Accelerator
	// MaxVCPUs is how many vCPUs Resize may bring a VM to (CPU hot-plug).
	// 0 or anything below a VM's vCPUs means no CPU hot-plug.
	MaxVCPUs uint32
	// MemoryHotplugMiB is how much memory Resize may add to a VM (ACPI
	// memory hot-plug). 0 means none.
	MemoryHotplugMiB uint32
	// AgentPort is the guest vsock port of podvm-agent; default
	// contract.VsockPort.
	AgentPort uint32
	// NoSeccomp runs cloud-hypervisor with --seccomp false (debugging).
	NoSeccomp bool

	// APITimeout bounds each REST call; default 10 s.
	APITimeout time.Duration
	// StartTimeout bounds Start when its ctx has no earlier deadline;
	// default 30 s.
	StartTimeout time.Duration
	// StopTimeout bounds the polite part of Stop (vm.shutdown, vm.delete,
	// vmm.shutdown and the wait for the process to exit) before SIGKILL;
	// default 3 s.
	StopTimeout time.Duration
	// AgentDialTimeout bounds one DialAgent, retries included; default 5 s.
	AgentDialTimeout time.Duration
	// ConsoleMaxBytes caps console.log and console.log.1 each; default
	// caplog.DefaultMaxBytes (1 MiB).
	ConsoleMaxBytes int64
}

// Defaults of Options.
const (
	DefaultAPITimeout       = 10 * time.Second
	DefaultStartTimeout     = 30 * time.Second
	DefaultStopTimeout      = 3 * time.Second
	DefaultAgentDialTimeout = 5 * time.Second
)

// Limits checked by Create. The memory floor is what our kernel and
// initramfs need; 255 vCPUs keeps to what our guest kernel (no x2APIC
// requirement) boots with.
const (
	minMemoryMiB = 64
	maxMemoryMiB = 1 << 20 // 1 TiB
	maxVCPUs     = 255
)

// Driver creates Cloud Hypervisor VMs.
type Driver struct {
	opts Options

	// probe gathers the accelerator facts; accel.Probe, replaced in tests.
	probe     func() accel.Facts
	probeOnce sync.Once
	facts     accel.Facts
}

var _ hypervisor.Driver = (*Driver)(nil)

// New returns a driver with opts (zero fields defaulted).
func New(opts Options) *Driver {
	if opts.APITimeout <= 0 {
		opts.APITimeout = DefaultAPITimeout
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.AgentDialTimeout <= 0 {
		opts.AgentDialTimeout = DefaultAgentDialTimeout
	}
	if opts.AgentPort == 0 {
		opts.AgentPort = contract.VsockPort
	}
	return &Driver{opts: opts, probe: accel.Probe}
}

// Name is the driver's config name.
func (d *Driver) Name() string { return Name }

// hostFacts probes the accelerator once per driver: it creates a KVM VM.
func (d *Driver) hostFacts() accel.Facts {
	d.probeOnce.Do(func() { d.facts = d.probe() })
	return d.facts
}

// decideAccel turns the configured choice into kvm, with the reason, or an
// error saying why Cloud Hypervisor cannot run here and what to use instead.
func (d *Driver) decideAccel(configured hypervisor.Accelerator) (hypervisor.Accelerator, string, error) {
	s := configured
	if s == "" {
		s = d.opts.Accelerator
	}
	want, err := hypervisor.ParseAccelerator(string(s))
	if err != nil {
		return "", "", err
	}
	if want == hypervisor.AccelTCG {
		return "", "", errors.New(`accelerator tcg: Cloud Hypervisor has no software emulation; use hypervisor.driver = "qemu" for TCG`)
	}
	ok, why := accel.KVMUsable(d.hostFacts())
	if !ok {
		return "", "", fmt.Errorf(`Cloud Hypervisor needs hardware KVM and this host has none usable (%s): use hypervisor.driver = "qemu", which falls back to TCG`, why)
	}
	reason := why
	if want == hypervisor.AccelKVM {
		reason = "forced by configuration; " + why
	}
	return hypervisor.AccelKVM, reason, nil
}

// Create validates cfg and prepares a VM; nothing is started and no host
// resource is taken, so an unused VM needs no Stop (calling it is harmless).
func (d *Driver) Create(ctx context.Context, cfg hypervisor.Config) (hypervisor.VM, error) {
	if cfg.Template != "" {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: VM templates: %w (use the qemu driver)", cfg.ID, hypervisor.ErrNotSupported)
	}
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: %w", cfg.ID, err)
	}
	bin, err := d.binary()
	if err != nil {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: %w", cfg.ID, err)
	}
	acc, accWhy, err := d.decideAccel(cfg.Accelerator)
	if err != nil {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: %w", cfg.ID, err)
	}
	if cfg.SharedFS == "" {
		cfg.SharedFS = contract.SharedFSVirtiofs
	}
	return newVM(d, bin, cfg, acc, accWhy), nil
}

// binary resolves Options.Path or finds cloud-hypervisor on PATH.
func (d *Driver) binary() (string, error) {
	return vmm.FindBinary(d.opts.Path, binaryName, Name,
		"install Cloud Hypervisor (a release binary from its project; it is not packaged in Debian bookworm) or set [hypervisor.cloud_hypervisor] path in the podvm config")
}

// validate checks what can be checked before anything starts, with errors
// that say what to do.
func validate(cfg hypervisor.Config) error {
	lim := vmm.Limits{MinMemoryMiB: minMemoryMiB, MaxMemoryMiB: maxMemoryMiB, MaxVCPUs: maxVCPUs}
	if err := vmm.ValidateCommon(cfg, []string{apiSocketName, vsockSocketName, virtiofsdSocketName}, lim); err != nil {
		return err
	}
	switch cfg.SharedFS {
	case "", contract.SharedFSVirtiofs:
	case contract.SharedFS9p:
		return errors.New(`shared_fs "9p": Cloud Hypervisor has no virtio-9p device; use shared_fs = "virtiofs"`)
	default:
		return fmt.Errorf("shared_fs %q: want virtiofs", cfg.SharedFS)
	}
	if err := vmm.ValidateSharedDir(cfg); err != nil {
		return err
	}
	switch cfg.Transport {
	case "", contract.TransportVsock:
	case contract.TransportSerial:
		return errors.New(`agent transport serial: Cloud Hypervisor has no named virtio-serial ports; its hybrid vsock needs no /dev/vhost-vsock, so use agent_transport = "vsock"`)
	default:
		return fmt.Errorf("agent transport %q: want vsock", cfg.Transport)
	}
	if _, err := hypervisor.ParseAccelerator(string(cfg.Accelerator)); err != nil {
		return err
	}
	for i, n := range cfg.Net {
		if _, err := netLaunchFor(i, n); err != nil {
			return err
		}
	}
	return nil
}

// netLaunchFor checks one NIC: Cloud Hypervisor's virtio-net always uses
// virtio-net headers on the tap, so the tap must have IFF_VNET_HDR.
func netLaunchFor(i int, d hypervisor.NetDevice) (netLaunch, error) {
	if d.Tap == nil {
		return netLaunch{}, fmt.Errorf("network device %d: no tap", i)
	}
	if !d.VnetHdr {
		return netLaunch{}, fmt.Errorf("network device %d: the tap was opened without IFF_VNET_HDR, which Cloud Hypervisor's virtio-net requires", i)
	}
	mac, err := net.ParseMAC(d.MAC)
	if err != nil || len(mac) != 6 {
		return netLaunch{}, fmt.Errorf("network device %d: MAC %q is not an Ethernet MAC", i, d.MAC)
	}
	if mac[0]&1 != 0 {
		return netLaunch{}, fmt.Errorf("network device %d: MAC %s is a multicast address", i, d.MAC)
	}
	return netLaunch{MAC: mac.String()}, nil
}

// virtiofsdConfig maps driver options onto the virtiofsd package.
func (o Options) virtiofsdConfig(cfg hypervisor.Config) virtiofsd.Config {
	return virtiofsd.Config{
		Name:       "virtiofsd for sandbox " + cfg.ID,
		Binary:     o.VirtiofsdPath,
		SocketPath: filepath.Join(cfg.StateDir, virtiofsdSocketName),
		SharedDir:  cfg.SharedDir,
		Cache:      o.VirtiofsCache,
		ExtraArgs:  o.VirtiofsdExtraArgs,
		LogPath:    filepath.Join(cfg.StateDir, virtiofsdLogName),
		Cgroup:     cfg.Cgroup,
		AllowSetID: cfg.AllowGuestSetID,
	}
}
