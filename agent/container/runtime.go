package container

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	// personality: the spec gets a personality, which the runtime sets
	// before it executes a container's program (layout.go).
	personality bool
}

// runtimeFor returns the runtime called name ("" is runc) from cfg; auto
// is crun when its binary is there (the image was built with it), else
// runc.
func runtimeFor(cfg Config, name string) (ociRuntime, error) {
	if name == contract.OCIRuntimeAuto {
		name = contract.OCIRuntimeRunc
		if _, err := os.Stat(cfg.Crun); cfg.Crun != "" && err == nil {
			name = contract.OCIRuntimeCrun
		}
	}
	switch name {
	case "", contract.OCIRuntimeRunc:
		return ociRuntime{name: contract.OCIRuntimeRunc, binary: cfg.Runc}, nil
	case contract.OCIRuntimeCrun:
		return ociRuntime{name: contract.OCIRuntimeCrun, binary: cfg.Crun, specVersion: crunSpecVersion, personality: true}, nil
	}
	return ociRuntime{}, fmt.Errorf("OCI runtime %q: want %q, %q or %q: %w", name, contract.OCIRuntimeRunc, contract.OCIRuntimeCrun, contract.OCIRuntimeAuto, errdefs.ErrInvalidArgument)
}

// SetRuntime chooses the OCI runtime ("runc", "crun", "auto"; "" is runc) for the
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
		return fmt.Errorf("OCI runtime %s: %w (an image built without Debian's crun package has runc only: choose hypervisor.guest_oci_runtime = \"auto\" or \"runc\", or rebuild the image with crun installed)", rt.name, err)
	}
	if len(m.containers) > 0 || len(m.creating) > 0 {
		return fmt.Errorf("switch the OCI runtime from %s to %s: containers exist: %w", m.runtime.name, rt.name, errdefs.ErrFailedPrecondition)
	}
	if rt.name == contract.OCIRuntimeCrun && m.cfg.SealRuntime && !m.crunSealed {
		if err := sealCrun(rt.binary, m.cfg.SealDir); err != nil {
			return err
		}
		if err := fixRuntimeLayout(); err != nil {
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

// sealCrun gives crun a read-only copy of itself that crun accepts as
// safe to run as it is, and tells crun so.
//
// Against CVE-2019-5736 (a container rewriting the runtime's binary through
// /proc/<pid>/exe) crun re-executes itself at every start from a read-only
// bind mount it makes and removes for the purpose, or else from a sealed
// memfd copy, unless /proc/self/exe already is such a memfd, or sits on a
// read-only mount and _LIBCONTAINER_CLONED_BINARY is set. crun asks the
// memfd question first (F_GET_SEALS), and in the guest the initramfs root is
// tmpfs, whose files answer it (with F_SEAL_SEAL only), so a read-only bind
// mount of /usr/bin/crun itself is never accepted: every call executed crun
// twice more (docs/benchmarks.md). A copy on ramfs, which has no seals,
// remounted read-only and bind-mounted read-only over the binary, passes the
// second test: the binary cannot be opened for writing through any path a
// container can reach, and each call is one exec of the same pages. The
// variable is set in the agent's own environment, which every runtime call
// inherits: runc 1.2 and later seal their own binary and ignore it, and
// containers get only their spec's environment.
func sealCrun(binary, copyDir string) error {
	// 0755 like the rest of /run/podvm, whose parents this may create: a
	// container's root in a user namespace must still traverse them to
	// reach its rootfs under the share. The ramfs itself is 0700.
	if err := os.MkdirAll(copyDir, 0o755); err != nil {
		return fmt.Errorf("seal %s: %w", binary, err)
	}
	if err := unix.Mount("ramfs", copyDir, "ramfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("seal %s: mount ramfs on %s: %w", binary, copyDir, err)
	}
	sealed := filepath.Join(copyDir, filepath.Base(binary))
	if err := copyFile(binary, sealed); err != nil {
		_ = unix.Unmount(copyDir, unix.MNT_DETACH)
		return fmt.Errorf("seal %s: %w", binary, err)
	}
	steps := []struct {
		src, dst string
		flags    uintptr
	}{
		{"", copyDir, unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV},
		{sealed, binary, unix.MS_BIND},
		{"", binary, unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY},
	}
	for _, st := range steps {
		if err := unix.Mount(st.src, st.dst, "", st.flags, ""); err != nil {
			_ = unix.Unmount(binary, unix.MNT_DETACH)
			_ = unix.Unmount(copyDir, unix.MNT_DETACH)
			return fmt.Errorf("seal %s: mount %q on %s: %w", binary, st.src, st.dst, err)
		}
	}
	if err := os.Setenv(clonedBinaryEnv, "1"); err != nil {
		return fmt.Errorf("set %s: %w", clonedBinaryEnv, err)
	}
	return nil
}

// copyFile copies the executable src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
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
