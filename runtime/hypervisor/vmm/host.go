package vmm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

// FindBinary resolves the configured path of the VMM binary, or finds name
// on PATH when none is configured. what names it in errors ("qemu"); fix
// says how to get one.
func FindBinary(configured, name, what, fix string) (string, error) {
	if p := configured; p != "" {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%s binary: %w; %s", what, err, fix)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s binary %s is not an executable file; %s", what, p, fix)
		}
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH; %s", name, fix)
	}
	return p, nil
}

// Limits are a driver's bounds on a VM's size.
type Limits struct {
	MinMemoryMiB, MaxMemoryMiB, MaxVCPUs uint32
}

// CheckSocketPaths checks that the sockets (names in stateDir) the VMM and
// its helpers bind fit in sun_path, which holds 107 bytes.
func CheckSocketPaths(stateDir string, sockets []string) error {
	for _, name := range sockets {
		if p := filepath.Join(stateDir, name); len(p) > 107 {
			return fmt.Errorf("state dir %s is too long for unix sockets (%s is %d bytes, the limit is 107): use a shorter state dir",
				stateDir, p, len(p))
		}
	}
	return nil
}

// ValidateCommon checks what every driver needs of cfg before anything
// starts: the id, a state dir whose sockets (names in it) fit in sun_path,
// the guest kernel and initramfs, the size within limits, and the shared
// directory. Errors say what to do.
func ValidateCommon(cfg hypervisor.Config, sockets []string, lim Limits) error {
	if cfg.ID == "" {
		return errors.New("empty sandbox ID")
	}
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return fmt.Errorf("state dir %q must be an absolute path", cfg.StateDir)
	}
	if err := CheckSocketPaths(cfg.StateDir, sockets); err != nil {
		return err
	}
	for _, f := range []struct{ what, path string }{{"kernel", cfg.KernelPath}, {"initramfs", cfg.InitrdPath}} {
		if f.path == "" {
			return fmt.Errorf("no guest %s configured: run `podvm image build` and set its path in the podvm config", f.what)
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("guest %s %s: %w: run `podvm image build`", f.what, f.path, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("guest %s %s is not a regular file: run `podvm image build`", f.what, f.path)
		}
	}
	if cfg.VCPUs < 1 || cfg.VCPUs > lim.MaxVCPUs {
		return fmt.Errorf("vcpus %d: want 1 to %d", cfg.VCPUs, lim.MaxVCPUs)
	}
	if cfg.MemoryMiB < lim.MinMemoryMiB || cfg.MemoryMiB > lim.MaxMemoryMiB {
		return fmt.Errorf("memory %d MiB: want %d to %d MiB", cfg.MemoryMiB, lim.MinMemoryMiB, lim.MaxMemoryMiB)
	}
	return nil
}

// ValidateSharedDir checks that cfg names an existing shared directory.
func ValidateSharedDir(cfg hypervisor.Config) error {
	if cfg.SharedDir == "" {
		return errors.New("no shared directory")
	}
	if st, err := os.Stat(cfg.SharedDir); err != nil || !st.IsDir() {
		return fmt.Errorf("shared directory %s: not a directory (%v)", cfg.SharedDir, err)
	}
	return nil
}

// CheckMemfd is the `podvm check` line for memfd_create: guest RAM is a
// shared memfd so that virtiofsd can map it.
func CheckMemfd() hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "memfd", Fix: "a Linux kernel with memfd_create (3.17+) and CONFIG_MEMFD_CREATE"}
	fd, err := unix.MemfdCreate("podvm-check", unix.MFD_CLOEXEC)
	if err != nil {
		r.Detail = fmt.Sprintf("memfd_create: %v", err)
		return r
	}
	unix.Close(fd)
	r.OK, r.Detail, r.Fix = true, "memfd_create works (guest RAM shared with virtiofsd)", ""
	return r
}

// CheckVirtiofsd is the `podvm check` line for the virtiofsd binary at the
// configured path (or the default ones); fix says how to get one.
func CheckVirtiofsd(configured, fix string) hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "virtiofsd", Fix: fix}
	bin, err := virtiofsd.FindBinary(configured)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	v, err := virtiofsd.Version(bin)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	r.OK, r.Detail, r.Fix = true, bin+": "+v, ""
	return r
}
