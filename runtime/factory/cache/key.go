package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// keyFormat changes when what Key covers changes, so that VMs booted by
// an older daemon never fit (2: the guest's OCI runtime).
const keyFormat = 2

// Key names what a VM of cfg is booted from, less anything of a pod (id,
// dirs, NICs, cgroup, size): the driver, the guest image (path, size,
// mtime: a rebuilt image gets a new key), the kernel parameters, the
// shared filesystem, the agent transport, the accelerator and debug, and
// the guest OCI runtime the daemon warmed in it (guestOCIRuntime, as
// configured: hypervisor.guest_oci_runtime), so that a pool warmed for
// crun never serves a pod configured for runc. The daemon and the shims
// compute it from the same configuration; the driver's own settings
// ([hypervisor.qemu]) are not in it, so both must read the same file
// (docs/factory.md, section 8).
func Key(driver string, cfg hypervisor.Config, guestOCIRuntime string) (string, error) {
	kernel, err := identify(cfg.KernelPath)
	if err != nil {
		return "", err
	}
	initrd, err := identify(cfg.InitrdPath)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal([]any{keyFormat, driver, kernel, initrd, cfg.KernelParams, cfg.SharedFS,
		cfg.AllowGuestSetID, cfg.Transport, cfg.Accelerator, cfg.Debug, guestOCIRuntime})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// identify is path with its size and mtime.
func identify(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("VM cache key: %w", err)
	}
	return fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano()), nil
}
