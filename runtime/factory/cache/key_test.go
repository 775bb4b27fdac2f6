package cache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// TestKeySeparatesWhatAVMIsBootedFor: a VM fits a pod only if it was
// booted (and its runtime warmed) for that pod's configuration.
func TestKeySeparatesWhatAVMIsBootedFor(t *testing.T) {
	base := hypervisor.Config{KernelPath: imageFile(t, "vmlinux"), InitrdPath: imageFile(t, "initramfs.cpio"),
		SharedFS: "virtiofs", Transport: "serial", Accelerator: "tcg"}
	key := func(driver string, cfg hypervisor.Config, runtime string) string {
		t.Helper()
		k, err := Key(driver, cfg, runtime)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ref := key("qemu", base, "crun")
	for _, c := range []struct {
		name    string
		driver  string
		cfg     func(*hypervisor.Config)
		runtime string
		same    bool
	}{
		{name: "same configuration", driver: "qemu", runtime: "crun", same: true},
		{name: "a pod's own parts", driver: "qemu", runtime: "crun", same: true, cfg: func(c *hypervisor.Config) {
			c.ID, c.StateDir, c.SharedDir, c.VCPUs, c.MemoryMiB = "pod", "/run/x", "/run/x/shared", 2, 512
		}},
		{name: "guest OCI runtime runc", driver: "qemu", runtime: "runc"},
		{name: "guest OCI runtime auto", driver: "qemu", runtime: "auto"},
		{name: "guest OCI runtime unset", driver: "qemu", runtime: ""},
		{name: "driver", driver: "cloud-hypervisor", runtime: "crun"},
		{name: "kernel parameters", driver: "qemu", runtime: "crun", cfg: func(c *hypervisor.Config) { c.KernelParams = []string{"x=1"} }},
		{name: "shared filesystem", driver: "qemu", runtime: "crun", cfg: func(c *hypervisor.Config) { c.SharedFS = "9p" }},
		{name: "transport", driver: "qemu", runtime: "crun", cfg: func(c *hypervisor.Config) { c.Transport = "vsock" }},
		{name: "accelerator", driver: "qemu", runtime: "crun", cfg: func(c *hypervisor.Config) { c.Accelerator = "kvm" }},
		{name: "debug", driver: "qemu", runtime: "crun", cfg: func(c *hypervisor.Config) { c.Debug = true }},
		{name: "guest setuid", driver: "qemu", runtime: "crun", cfg: func(c *hypervisor.Config) { c.AllowGuestSetID = true }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			got := key(c.driver, cfg, c.runtime)
			if (got == ref) != c.same {
				t.Errorf("key %s against %s: same = %v, want %v", got, ref, got == ref, c.same)
			}
		})
	}
}

// imageFile is a guest image file named name, for Key to identify.
func imageFile(t *testing.T, name string) string {
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
