package container

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
)

// crunSpecVersion is the ociVersion the agent gives crun. crun 1.8.1
// refuses a spec whose ociVersion does not contain "1.0" ("unknown version
// specified"), and containerd 2.x writes 1.2 or later. crun reads every field
// it knows whatever the version, and the features podvm's pods use from later
// spec versions (idmapped mounts, ...) it knows by 1.8.
const crunSpecVersion = "1.0.2"

// ociRuntime is the OCI runtime binary the agent runs containers with.
// runc and crun share the CLI go-runc drives (create, start, exec --process,
// kill, delete, ps, update, --root, --log with --log-format json).
type ociRuntime struct {
	name   string // contract.OCIRuntime*
	binary string
	// specVersion, when set, replaces the spec's ociVersion.
	specVersion string
}

// runtimeFor returns the runtime called name ("" is runc) from cfg.
func runtimeFor(cfg Config, name string) (ociRuntime, error) {
	switch name {
	case "", contract.OCIRuntimeRunc:
		return ociRuntime{name: contract.OCIRuntimeRunc, binary: cfg.Runc}, nil
	case contract.OCIRuntimeCrun:
		return ociRuntime{name: contract.OCIRuntimeCrun, binary: cfg.Crun, specVersion: crunSpecVersion}, nil
	}
	return ociRuntime{}, fmt.Errorf("OCI runtime %q: want %q or %q: %w", name, contract.OCIRuntimeRunc, contract.OCIRuntimeCrun, errdefs.ErrInvalidArgument)
}

// SetRuntime chooses the OCI runtime ("runc", "crun"; "" is runc) for the
// containers created from now on. It is refused once a container exists:
// one runtime's state is not the other's to read.
func (m *Manager) SetRuntime(name string) error {
	rt, err := runtimeFor(m.cfg, name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if rt == m.runtime {
		return nil
	}
	if _, err := os.Stat(rt.binary); err != nil {
		return fmt.Errorf("OCI runtime %s: %w", rt.name, err)
	}
	if len(m.containers) > 0 || len(m.creating) > 0 {
		return fmt.Errorf("switch the OCI runtime from %s to %s: containers exist: %w", m.runtime.name, rt.name, errdefs.ErrFailedPrecondition)
	}
	if rt.name == contract.OCIRuntimeCrun && m.cfg.SealRuntime && !m.crunSealed {
		if err := sealCrun(rt.binary); err != nil {
			return err
		}
		m.crunSealed = true
	}
	m.runtime = rt
	return nil
}

// clonedBinaryEnv is the variable with which crun (like runc up to 1.1)
// trusts a binary on a read-only mount as safe to run as it is.
const clonedBinaryEnv = "_LIBCONTAINER_CLONED_BINARY"

// sealCrun bind-mounts crun read-only onto itself and tells crun so.
//
// Against CVE-2019-5736 (a container rewriting the runtime's binary through
// /proc/<pid>/exe) crun re-executes itself at every start from a read-only
// bind mount it makes and removes for the purpose, or else from a sealed
// memfd copy, unless its binary already is on a read-only mount and
// _LIBCONTAINER_CLONED_BINARY is set. Making that mount once here keeps the
// protection (the binary cannot be opened for writing through any path a
// container can reach) and spares every crun call the mount, unmount and
// second exec. The variable is set in the agent's own environment, which
// every runtime call inherits: runc 1.2 and later seal their own binary
// and ignore it, and containers get only their spec's environment.
func sealCrun(binary string) error {
	if err := unix.Mount(binary, binary, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto itself: %w", binary, err)
	}
	if err := unix.Mount("", binary, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(binary, unix.MNT_DETACH)
		return fmt.Errorf("make %s read-only: %w", binary, err)
	}
	if err := os.Setenv(clonedBinaryEnv, "1"); err != nil {
		return fmt.Errorf("set %s: %w", clonedBinaryEnv, err)
	}
	return nil
}

// Runtime names the OCI runtime new containers get.
func (m *Manager) Runtime() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runtime.name
}

// Mark is when the agent reached a step of a container's life: the
// guest's CLOCK_BOOTTIME in nanoseconds.
type Mark struct {
	Name string
	At   int64
}

// MarkNow is a mark of step name at this instant.
func MarkNow(name string) Mark {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return Mark{Name: name, At: ts.Nano()}
}
