package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// Hybrid vsock for a VMM without its own (QEMU): one vhost-device-vsock per
// VM serves the guest's virtio-vsock device over vhost-user and gives the
// host end as a unix socket that speaks hybrid vsock (package hvsock). Both
// its sockets live in a directory of their own inside the VM's 0700 state
// dir: nothing else there for the guest's connections to host ports
// (<agent socket>_<port>) to find, and no path for another pod to reach.
// docs/vsock-virtiofsd.md has the measurements behind this.

// Names under the state dir.
const (
	// HybridVsockDirName is the daemon's directory.
	HybridVsockDirName = "vsock"
	// HybridVsockVhostSocket is the vhost-user socket the VMM connects to.
	HybridVsockVhostSocket = HybridVsockDirName + "/vhost.sock"
	// HybridVsockAgentSocket is the hybrid vsock socket the shim dials.
	HybridVsockAgentSocket = HybridVsockDirName + "/agent.sock"
	// HybridVsockPidName is the daemon's pid file.
	HybridVsockPidName = "vhost-device-vsock.pid"
	// HybridVsockLogName is the daemon's log.
	HybridVsockLogName = "vhost-device-vsock.log"
	// HybridVsockBinaryName is the daemon's executable.
	HybridVsockBinaryName = "vhost-device-vsock"
)

// HybridVsockGuestCID is every guest's CID: the device is private to its
// VM, so the CID names nothing outside it.
const HybridVsockGuestCID = 3

// hybridVsockDirFD is the daemon's fd of its directory. It names its
// sockets through /proc/self/fd/3/: running as another uid, it could not
// walk the path through the root-owned 0700 state dir.
const hybridVsockDirFD = 3

// HybridVsockConfig is one VM's vhost-device-vsock.
type HybridVsockConfig struct {
	// Name is used in errors, e.g. "vhost-device-vsock for sandbox abc".
	Name   string
	Binary string
	// Jail is the uid and gid it runs as (and that own its directory),
	// without capabilities; nil keeps the shim's.
	Jail   *childproc.Jail
	Cgroup childproc.Cgroup
}

// HybridVsockArgs is the daemon's command line (without argv[0]), its
// sockets named through the directory's fd.
func HybridVsockArgs() []string {
	dir := fmt.Sprintf("/proc/self/fd/%d/", hybridVsockDirFD)
	return []string{
		"--guest-cid", fmt.Sprint(HybridVsockGuestCID),
		"--socket", dir + filepath.Base(HybridVsockVhostSocket),
		"--uds-path", dir + filepath.Base(HybridVsockAgentSocket),
	}
}

// FindHybridVsock resolves vhost-device-vsock: configured if set (it must
// then be usable), else the install's <prefix>/libexec/podvm/ (prefix:
// the directory above the running program's bin/), else PATH. Not found
// is "", with where it looked.
func FindHybridVsock(configured string) (path string, err error) {
	if configured != "" {
		return FindBinary(configured, HybridVsockBinaryName, "vhost-device-vsock", "fix hypervisor.qemu.vhost_device_vsock_path")
	}
	var tried string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(filepath.Dir(exe)), "libexec", "podvm", HybridVsockBinaryName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
		tried = p + " nor "
	}
	if p, err := exec.LookPath(HybridVsockBinaryName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in %son PATH", HybridVsockBinaryName, tried)
}

// StartHybridVsock creates the daemon's directory (0700, owned by
// cfg.Jail's uid), starts the daemon in it and waits until both its
// sockets exist (it takes no listening fd; about 10 ms). Call it before
// StartVMM: the VMM connects to its vhost-user socket at start-up.
func (m *Machine) StartHybridVsock(ctx context.Context, cfg HybridVsockConfig) error {
	dir, err := m.hybridVsockDir(cfg.Jail)
	if err != nil {
		return err
	}
	defer dir.Close()
	proc, err := childproc.Start(childproc.Spec{
		Name: cfg.Name, Path: cfg.Binary, Args: HybridVsockArgs(),
		LogPath:    m.Path(HybridVsockLogName),
		ExtraFiles: []*os.File{dir},
		Cgroup:     cfg.Cgroup,
		Jail:       cfg.Jail,
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.vsockd = proc
	m.mu.Unlock()
	writePid(m.Path(HybridVsockPidName), proc.Pid())
	return m.waitHybridVsock(ctx, proc)
}

// hybridVsockDir makes the daemon's directory afresh and opens it.
func (m *Machine) hybridVsockDir(j *childproc.Jail) (*os.File, error) {
	path := m.Path(HybridVsockDirName)
	if err := os.RemoveAll(path); err != nil { // a crashed shim's
		return nil, fmt.Errorf("vsock dir: %w", err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		return nil, fmt.Errorf("vsock dir: %w", err)
	}
	if j != nil {
		if err := os.Chown(path, int(j.UID), int(j.GID)); err != nil {
			return nil, fmt.Errorf("vsock dir: %w", err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vsock dir: %w", err)
	}
	return f, nil
}

// waitHybridVsock polls for both sockets, from 1 ms backing off to 16 ms.
func (m *Machine) waitHybridVsock(ctx context.Context, proc *childproc.Process) error {
	delay := time.Millisecond
	for {
		if exists(m.Path(HybridVsockVhostSocket)) && exists(m.Path(HybridVsockAgentSocket)) {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-proc.Done():
			t.Stop()
			return proc.ExitReason(LogTailLines, "during start")
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the sockets of %s: %w", proc.Name(), ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 16*time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// stopHybridVsock kills the daemon (it never exits by itself, and on
// SIGTERM it leaves its sockets behind) and removes its directory. Called
// after the VMM is gone.
func (m *Machine) stopHybridVsock(proc *childproc.Process) error {
	if proc == nil {
		return nil
	}
	proc.Kill()
	var errs []error
	for _, p := range []string{m.Path(HybridVsockDirName), m.Path(HybridVsockPidName)} {
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
