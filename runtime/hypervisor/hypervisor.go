// Package hypervisor is the seam between a pod's sandbox and the VMM that runs
// it. A Driver (qemu, cloudhypervisor) turns a Config into a VM; the sandbox
// only ever talks to the VM interface, so every driver behaves the same way to
// the rest of the runtime: same lifecycle, same errors, same death reporting.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
)

// ErrNotSupported is returned by optional operations a driver does not offer.
var ErrNotSupported = errors.New("not supported by this hypervisor driver")

// Accelerator is how guest instructions are executed: kvm or tcg once a VM
// runs (Info), and also auto (or empty) in a configuration (Config,
// driver options), meaning: probe the host and choose (package accel).
type Accelerator string

const (
	// AccelAuto chooses kvm when the host has hardware KVM, else tcg.
	AccelAuto Accelerator = "auto"
	// AccelKVM is hardware virtualization through /dev/kvm (VMX or SVM).
	AccelKVM Accelerator = "kvm"
	// AccelTCG is QEMU's software emulation: slow, but runs anywhere.
	AccelTCG Accelerator = "tcg"
)

// ParseAccelerator accepts "", auto, kvm and tcg, in any case and with
// surrounding spaces; empty means auto.
func ParseAccelerator(s string) (Accelerator, error) {
	switch a := Accelerator(strings.ToLower(strings.TrimSpace(s))); a {
	case "", AccelAuto:
		return AccelAuto, nil
	case AccelKVM, AccelTCG:
		return a, nil
	}
	return "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", s)
}

// Config is everything a driver needs to boot one pod VM.
type Config struct {
	// ID names the sandbox; it appears in process names and logs.
	ID string
	// StateDir is a private per-sandbox directory for sockets, pid files and
	// logs. The driver creates files only inside it.
	StateDir string

	KernelPath   string
	InitrdPath   string
	KernelParams []string

	VCPUs     uint32
	MemoryMiB uint32

	// SharedDir is exported to the guest with tag contract.SharedFSTag.
	SharedDir string
	// SharedFS is contract.SharedFSVirtiofs (default) or contract.SharedFS9p.
	SharedFS string
	// AllowGuestSetID lets virtiofsd apply setuid and setgid modes the
	// guest asks for; by default it refuses them (virtiofsd.Config).
	AllowGuestSetID bool

	// Net are the guest's network interfaces, in order.
	Net []NetDevice

	// Transport selects the agent channel; empty means the driver's default.
	Transport contract.Transport

	// Accelerator forces kvm or tcg, or asks for auto (probe and choose);
	// empty means the driver's default.
	Accelerator Accelerator

	// Debug sends the guest console to StateDir/console.log at full verbosity.
	Debug bool

	// Cgroup, when set, receives the VMM and every helper process right
	// after each is spawned: the pod's host cgroup, so that the VM's host
	// memory and CPU are charged to the pod. nil leaves them in the
	// shim's cgroup.
	Cgroup Cgroup

	// Template, when set, is a directory a TemplateSaver wrote: the VM is
	// restored from it instead of booted, with the template's kernel, size
	// and booted guest, and this Config's own state dir, share, NIC (at
	// most one) and agent secret. A driver that cannot restore templates
	// refuses it.
	Template string
}

// TemplateSaver is a driver that saves a booted VM, its agent ready, as a
// template that Config.Template restores (docs/factory.md).
type TemplateSaver interface {
	// SaveTemplate boots a VM from cfg, waits for its agent, saves it
	// into dir (which must not exist) and stops it.
	SaveTemplate(ctx context.Context, cfg Config, dir string) error
	// TemplateKey names the template cfg's VM would be cloned from: a
	// hash of everything the template's command line depends on (guest
	// image, size, kernel command line, accelerator, VMM binary), so
	// that a template saved for another guest or VMM is never used.
	TemplateKey(cfg Config) (string, error)
}

// Cgroup is a host cgroup the driver moves the VM's processes into.
type Cgroup interface {
	// Add moves process pid, with its threads, into the cgroup.
	Add(pid int) error
}

// NetDevice is one guest network interface backed by a host tap device
// that the runtime created in the pod's network namespace.
type NetDevice struct {
	// Tap is the open tap device; the VMM inherits it. The caller keeps
	// ownership and closes it after the VM stopped.
	Tap *os.File
	// VnetHdr says the tap was opened with IFF_VNET_HDR.
	VnetHdr bool
	// MAC is the guest interface's address (the pod interface's MAC, so
	// the guest answers for the address CNI assigned).
	MAC string
	MTU uint32
}

// Driver creates VMs of one kind of VMM.
type Driver interface {
	// Name is the driver's config name: "qemu", "cloud-hypervisor".
	Name() string
	// Check reports whether this host can run the driver, with a fix for
	// each missing piece. It does not start a VM.
	Check(ctx context.Context) []CheckResult
	// Create validates cfg and prepares a VM without starting anything.
	Create(ctx context.Context, cfg Config) (VM, error)
}

// CheckResult is one line of `podvm check`.
type CheckResult struct {
	Name   string
	OK     bool
	Detail string
	// Fix tells the operator what to do when !OK.
	Fix string
	// Optional marks a check whose failure has a working fallback (no
	// vhost-vsock: virtio-serial; no hardware KVM: TCG), so it is reported
	// but does not make `podvm check` fail.
	Optional bool
}

// Diagnoser is a VM that can describe its guest's state from outside,
// for the report the shim logs when the agent stops answering.
type Diagnoser interface {
	Diagnose(ctx context.Context) string
}

// VM is one running (or startable) pod VM.
type VM interface {
	// Start launches the VMM and its helpers (virtiofsd) and boots the guest.
	// It returns once the VMM is running; the agent may not be ready yet.
	// On error everything Start launched has been stopped again.
	Start(ctx context.Context) error
	// DialAgent opens a new connection to the agent's channel. It fails fast
	// when the guest is not listening yet; callers retry.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Stop stops the VMM and every helper and removes their sockets. It is
	// idempotent and safe to call after the VMM died.
	Stop(ctx context.Context) error
	// Done is closed when the VMM or an essential helper exits for any reason.
	Done() <-chan struct{}
	// ExitError says why Done was closed (nil after a requested Stop).
	ExitError() error
	// Pids lists the host processes of this VM (VMM first, then helpers).
	Pids() []int
	// Info reports what was actually chosen at start.
	Info() Info
	// Resize changes vCPUs and memory of a running VM.
	Resize(ctx context.Context, vcpus uint32, memoryMiB uint32) error
}

// Info describes a started VM.
type Info struct {
	Driver      string
	Accelerator Accelerator
	// AccelReason says why Accelerator was chosen, for the log:
	// "/dev/kvm is kvm_pvm (software), no vmx/svm".
	AccelReason string
	Transport   contract.Transport
	// TransportReason says why Transport was chosen, for the log:
	// "no usable /dev/vhost-vsock (...): using virtio-serial".
	TransportReason string
	VCPUs           uint32
	MemoryMiB       uint32
	// StartedAt is when the VMM process was spawned.
	StartedAt time.Time
	// ConsolePath is the guest console log, for error messages.
	ConsolePath string
	// NICMACs are the MACs the guest's NICs have at start, in Config.Net
	// order: Config.Net's own, except in a VM restored from a template,
	// whose NICs keep the template's until the agent sets the pod's
	// (api.Interface.device_mac). Empty: as in Config.Net.
	NICMACs []string
}
