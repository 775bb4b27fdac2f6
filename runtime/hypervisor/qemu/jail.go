package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/jailuid"
)

// JailOptions configure QEMU's jail. Zero values are the jailuid defaults.
type JailOptions struct {
	// Off runs QEMU as the runtime's user, as before the jail existed.
	Off bool
	// UIDBase and UIDCount are the uid range, one uid (and the gid of the
	// same number) per running VM.
	UIDBase, UIDCount uint32
	// LockDir holds the uids' lock files.
	LockDir string
}

// jailRange is the uid range with defaults filled in.
func (o Options) jailRange() jailuid.Range {
	r := jailuid.Range{Base: o.Jail.UIDBase, Count: o.Jail.UIDCount, Dir: o.Jail.LockDir}
	if r.Base == 0 {
		r.Base = jailuid.DefaultBase
	}
	if r.Count == 0 {
		r.Count = jailuid.DefaultCount
	}
	if r.Dir == "" {
		r.Dir = jailuid.DefaultDir
	}
	return r
}

// kvmDevice is the device QEMU opens itself under -accel kvm (QEMU 7.2 has
// no option to hand it an fd).
const kvmDevice = "/dev/kvm"

// jail is QEMU's unprivileged identity for one VM and what it is handed so
// that it never needs a path outside its state dir (docs/design.md, "QEMU's
// jail"). The zero value (nil *jail) is QEMU run as the shim's user.
type jail struct {
	lease *jailuid.Lease
	cred  childproc.Jail
	// files are the pre-opened state dir (O_PATH), kernel and initrd; QEMU
	// reaches them as /proc/self/fd/N, which needs no search permission on
	// their parent directories.
	files []*os.File
}

// jailReason says why a VM runs unjailed, or "" if it is jailed.
func (d *Driver) jailReason(l launch) string {
	switch {
	case d.opts.Jail.Off:
		return "turned off in the configuration"
	case os.Geteuid() != 0:
		return "the runtime is not root, so QEMU already runs as its user"
	case l.SharedFS == contract.SharedFS9p && !l.Proxy9p:
		// QEMU's 9p server reads the share itself, as its own uid.
		return "9p makes QEMU serve the share, which needs the runtime's user"
	}
	return ""
}

// newJail leases a uid for VM l, hands it the state dir (mode 0700, so
// only the shim, as root, and this uid get in) and the agent secret, and
// opens what QEMU reads by path.
func newJail(r jailuid.Range, qemuPath string, l launch) (j *jail, err error) {
	lease, err := r.Acquire(l.ID)
	if err != nil {
		return nil, err
	}
	j = &jail{lease: lease, cred: childproc.Jail{UID: lease.UID, GID: lease.UID, Namespaces: true, OwnRoot: true}}
	defer func() {
		if err != nil {
			j.closeFiles()
			j.release()
		}
	}()
	if l.Accel == hypervisor.AccelKVM {
		gid, err := kvmGroup()
		if err != nil {
			return nil, err
		}
		if gid >= 0 {
			j.cred.Groups = []uint32{uint32(gid)}
		}
		j.cred.ReadWrite = append(j.cred.ReadWrite, kvmDevice)
	}
	j.cred.ReadOnly = readOnlyPaths(qemuPath, l)
	j.cred.ReadWrite = append(j.cred.ReadWrite, l.StateDir)
	for _, p := range []string{l.StateDir, l.SecretPath} {
		if p == "" {
			continue
		}
		if err := os.Chown(p, int(lease.UID), int(lease.UID)); err != nil {
			return nil, fmt.Errorf("jail: %w", err)
		}
	}
	if err := os.Chmod(l.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("jail: %w", err)
	}
	dir, err := openPath(l.StateDir)
	if err != nil {
		return nil, err
	}
	j.files = append(j.files, dir)
	for _, p := range []string{l.Kernel, l.Initrd} {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("jail: %w", err)
		}
		j.files = append(j.files, f)
	}
	return j, nil
}

// systemPaths are what QEMU reads once it runs: its dynamic loader and
// libraries, its modules and firmware (microvm's bios-microvm.bin). Those
// missing on this host are left out.
var systemPaths = []string{"/usr", "/lib", "/lib64", "/etc/ld.so.cache"}

// readOnlyPaths is what QEMU may read and execute (Landlock, when the
// kernel has it): the system's files, its binary, the guest's kernel and
// initramfs.
func readOnlyPaths(qemuPath string, l launch) []string {
	var ro []string
	for _, p := range systemPaths {
		if _, err := os.Stat(p); err == nil {
			ro = append(ro, p)
		}
	}
	return append(ro, qemuPath, l.Kernel, l.Initrd)
}

// kvmGroup is the group to give QEMU for /dev/kvm: -1 if the device is
// open to all, its group if that group may read and write it. A device
// only root may open cannot be used by a jailed QEMU.
func kvmGroup() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(kvmDevice, &st); err != nil {
		return 0, fmt.Errorf("jail: %w", err)
	}
	switch {
	case st.Mode&0o006 == 0o006:
		return -1, nil
	case st.Mode&0o060 == 0o060:
		return int(st.Gid), nil
	}
	return 0, fmt.Errorf("jail: %s (mode %o) is open to root only, so a jailed QEMU cannot use KVM: "+
		"give it a group (usually kvm, mode 0660) or set hypervisor.qemu.jail = false", kvmDevice, st.Mode&0o777)
}

// openPath opens dir as an O_PATH handle: enough to resolve names under
// it, not to read it.
func openPath(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("jail: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// pass appends the jail's files to extra (QEMU's fds from 3 on) and
// returns l with the state dir, kernel and initrd as QEMU names them.
func (j *jail) pass(l launch, extra []*os.File) (launch, []*os.File) {
	fdPath := func(i int) string { return "/proc/self/fd/" + strconv.Itoa(3+len(extra)+i) }
	l.StateDir, l.Kernel, l.Initrd = fdPath(0), fdPath(1), fdPath(2)
	if l.SecretPath != "" {
		// vmsecret.Create puts it in the state dir.
		l.SecretPath = l.Path(filepath.Base(l.SecretPath))
	}
	return l, append(extra, j.files...)
}

// grantSocket lets QEMU connect to a socket another process made in the
// state dir (virtiofsd's).
func (j *jail) grantSocket(path string) error {
	if err := os.Chown(path, int(j.cred.UID), int(j.cred.GID)); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("jail: %w", err)
	}
	return nil
}

// closeFiles closes the shim's copies once QEMU has its own.
func (j *jail) closeFiles() {
	for _, f := range j.files {
		f.Close()
	}
	j.files = nil
}

// release gives the uid back once QEMU is gone.
func (j *jail) release() {
	if j != nil {
		j.lease.Release()
	}
}
