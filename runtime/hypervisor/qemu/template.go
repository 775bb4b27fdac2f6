package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/factory/hold"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// VM templates (docs/factory.md): a booted VM whose agent is ready is
// saved once, guest RAM in a file and device state in another; a holder
// process (package hold) keeps the RAM in a sealed memfd, which each clone
// maps private (untouched pages stay shared between clones, copy-on-write,
// and no clone can change what later clones start from), and restores the device state with its own sockets,
// share and secret. virtio-fs cannot be migrated by QEMU 7.2, not even
// into a clone, so templates and clones share by virtio-9p; and the agent
// channel is virtio-serial, whose state migrates. A template has one NIC
// with a hub port for backend and templateNICMAC; a clone's NIC is the
// pod's tap (or again a hub port, for a pod without network), and keeps
// the template's MAC (device state), which the agent then changes.

// Files of a template directory.
const (
	templateRAMName    = "ram"
	templateStateName  = "state"
	templateMetaName   = "template.json"
	templateSecretName = "agent.secret"
	// templateShareName is the template's own share: empty, never mounted
	// (a mounted 9p export blocks migration). Clones bring theirs.
	templateShareName = "share"
)

// templateNICMAC is a template's NIC's MAC (locally administered), which
// every clone's guest starts with.
const templateNICMAC = "02:70:64:76:6d:01"

// templateMeta is what a clone must repeat of the template's command line:
// QEMU restores device state only into a machine built the same way.
type templateMeta struct {
	VCPUs     uint32                 `json:"vcpus"`
	MemoryMiB uint32                 `json:"memory_mib"`
	Kernel    string                 `json:"kernel"`
	Initrd    string                 `json:"initrd"`
	Cmdline   string                 `json:"cmdline"`
	Accel     hypervisor.Accelerator `json:"accelerator"`
	TBSizeMiB uint32                 `json:"tb_size_mib"`
	NICMAC    string                 `json:"nic_mac"`
}

// templateRole makes a VM one that saves a template (save) or a clone
// restored from one. A nil role is a VM that boots as usual.
type templateRole struct {
	dir  string
	save bool
	// For a clone: the template's command line and agent secret, which
	// the clone's agent holds until Handover.
	meta   templateMeta
	secret []byte
}

func (r *templateRole) path(name string) string { return filepath.Join(r.dir, name) }

// restoring says the VM is a clone.
func (r *templateRole) restoring() bool { return r != nil && !r.save }

// templateLaunch checks what a template or a clone must be: one NIC at
// most, the agent on virtio-serial, the share by 9p.
func templateLaunch(cfg hypervisor.Config) (hypervisor.Config, error) {
	if len(cfg.Net) > 1 {
		return cfg, fmt.Errorf("%d network devices: a VM template carries one (docs/factory.md): create the VM without a template", len(cfg.Net))
	}
	switch cfg.Transport {
	case "", contract.TransportSerial:
	default:
		return cfg, fmt.Errorf("agent transport %q: a VM template's agent channel is virtio-serial (vhost-vsock state does not migrate): set it to serial or leave it empty", cfg.Transport)
	}
	switch cfg.SharedFS {
	case "", contract.SharedFS9p:
	default:
		return cfg, fmt.Errorf("shared_fs %q: a VM template shares by 9p (QEMU 7.2 cannot migrate vhost-user-fs): set it to 9p or leave it empty", cfg.SharedFS)
	}
	cfg.Transport, cfg.SharedFS = contract.TransportSerial, contract.SharedFS9p
	return cfg, nil
}

// loadTemplate reads a template directory SaveTemplate wrote.
func loadTemplate(dir string) (*templateRole, error) {
	r := &templateRole{dir: dir}
	raw, err := os.ReadFile(r.path(templateMetaName))
	if err != nil {
		return nil, fmt.Errorf("VM template %s: %w (save one first)", dir, err)
	}
	if err := json.Unmarshal(raw, &r.meta); err != nil {
		return nil, fmt.Errorf("VM template %s: %s: %w", dir, templateMetaName, err)
	}
	if r.secret, err = os.ReadFile(r.path(templateSecretName)); err != nil {
		return nil, fmt.Errorf("VM template %s: %w", dir, err)
	}
	if err := contract.CheckSecret(r.secret); err != nil {
		return nil, fmt.Errorf("VM template %s: %w", dir, err)
	}
	for _, p := range []string{r.path(templateRAMName), r.path(templateStateName)} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("VM template %s is incomplete (save it again): %w", dir, err)
		}
	}
	if r.meta.NICMAC == "" {
		return nil, fmt.Errorf("VM template %s has no NIC (saved by an older podvm): save it again", dir)
	}
	for _, p := range []string{r.meta.Kernel, r.meta.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("VM template %s: the guest image it was booted from is gone (save it again): %w", dir, err)
		}
	}
	return r, nil
}

// apply puts the role into the launch plan: for a template, RAM in the
// template's file; for a clone, the template's guest, size and
// accelerator (its RAM, the held memfd, is passed at start: passFiles).
func (r *templateRole) apply(l *launch, info *hypervisor.Info) {
	if r.save {
		l.MemPath = r.path(templateRAMName)
		l.Net = []netLaunch{{Hub: true, MAC: templateNICMAC}}
		info.NICMACs = []string{templateNICMAC}
		return
	}
	l.MemPrivate, l.Proxy9p = true, true
	m := r.meta
	if len(l.Net) == 0 {
		l.Net = []netLaunch{{Hub: true, MAC: m.NICMAC}}
	}
	info.NICMACs = []string{m.NICMAC}
	l.Kernel, l.Initrd, l.Cmdline, l.VCPUs, l.MemoryMiB = m.Kernel, m.Initrd, m.Cmdline, m.VCPUs, m.MemoryMiB
	l.Accel, l.TBSizeMiB = m.Accel, m.TBSizeMiB
	info.Accelerator, info.AccelReason = m.Accel, "restored from VM template "+r.dir
	info.VCPUs, info.MemoryMiB = m.VCPUs, m.MemoryMiB
}

// stateFile opens the device state file: created for a template (it must
// not exist), read for a clone. QEMU gets its own copy of the fd.
func (r *templateRole) stateFile() (*os.File, error) {
	if r.save {
		f, err := os.OpenFile(r.path(templateStateName), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o400)
		if err != nil {
			return nil, fmt.Errorf("VM template: %w", err)
		}
		return f, nil
	}
	f, err := os.OpenFile(r.path(templateStateName), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("VM template: %w", err)
	}
	return f, nil
}

// holdSpec is the template's holder (package hold): it keeps the RAM
// file's content in a sealed memfd until the template is removed or an
// input it was made from (guest image, QEMU) changes.
func (r *templateRole) holdSpec(qemuPath string) hold.Spec {
	return hold.Spec{
		Dir: r.dir, RAM: templateRAMName, Mark: templateMetaName,
		Inputs: []string{r.meta.Kernel, r.meta.Initrd, qemuPath},
		Cgroup: hold.Cgroup,
	}
}

// heldRAM is the template's RAM as a clone's QEMU maps it: the holder's
// sealed memfd, the holder started first if none runs.
func (r *templateRole) heldRAM(qemuPath string) (*os.File, error) {
	f, err := hold.Ensure(r.holdSpec(qemuPath), int64(r.meta.MemoryMiB)<<20)
	if err != nil {
		return nil, fmt.Errorf("VM template %s: %w", r.dir, err)
	}
	return f, nil
}

// metaOf is the template's command line as launched, for its clones.
func metaOf(l launch) templateMeta {
	return templateMeta{
		VCPUs: l.VCPUs, MemoryMiB: l.MemoryMiB,
		Kernel: l.Kernel, Initrd: l.Initrd, Cmdline: l.Cmdline,
		Accel: l.Accel, TBSizeMiB: l.TBSizeMiB,
		NICMAC: l.Net[0].MAC,
	}
}
