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
	m.runtime = rt
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

func markNow(name string) Mark {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return Mark{Name: name, At: ts.Nano()}
}
