package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/runtime/hypervisor"
	"golang.org/x/sys/unix"
)

func validConfig(t *testing.T) hypervisor.Config {
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initramfs"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "shared"), 0o755)
	return hypervisor.Config{
		ID: "sb", StateDir: filepath.Join(dir, "state"),
		KernelPath: filepath.Join(dir, "vmlinux"), InitrdPath: filepath.Join(dir, "initramfs"),
		VCPUs: 1, MemoryMiB: 256, SharedDir: filepath.Join(dir, "shared"),
	}
}

func TestCreateValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*hypervisor.Config)
		want   string
	}{
		{"missing kernel", func(c *hypervisor.Config) { c.KernelPath = "/nonexistent/vmlinux" },
			"guest kernel /nonexistent/vmlinux: stat /nonexistent/vmlinux: no such file or directory: run `podvm image build`"},
		{"missing initrd", func(c *hypervisor.Config) { c.InitrdPath = "" }, "run `podvm image build`"},
		{"zero vcpus", func(c *hypervisor.Config) { c.VCPUs = 0 }, "vcpus 0: want 1 to 255"},
		{"tiny memory", func(c *hypervisor.Config) { c.MemoryMiB = 16 }, "memory 16 MiB"},
		{"bad shared fs", func(c *hypervisor.Config) { c.SharedFS = "nfs" }, `shared_fs "nfs"`},
		{"no shared dir", func(c *hypervisor.Config) { c.SharedDir = "/nonexistent" }, "shared directory /nonexistent"},
		{"relative state dir", func(c *hypervisor.Config) { c.StateDir = "state" }, "absolute path"},
		{"long state dir", func(c *hypervisor.Config) { c.StateDir = "/run/" + strings.Repeat("d", 100) }, "too long for unix sockets"},
		{"bad transport", func(c *hypervisor.Config) { c.Transport = "tcp" }, `transport "tcp"`},
		{"bad accelerator", func(c *hypervisor.Config) { c.Accelerator = "hvf" }, `accelerator "hvf"`},
	}
	d := New(Options{QEMUPath: "/bin/true"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mutate(&cfg)
			_, err := d.Create(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := d.Create(context.Background(), validConfig(t)); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestCreateMissingQEMU(t *testing.T) {
	d := New(Options{QEMUPath: "/nonexistent/qemu"})
	_, err := d.Create(context.Background(), validConfig(t))
	if err == nil || !strings.Contains(err.Error(), "install qemu-system-x86") || !strings.Contains(err.Error(), "[hypervisor.qemu] path") {
		t.Errorf("err = %v", err)
	}
}

func TestUnstartedVM(t *testing.T) {
	vm, err := New(Options{QEMUPath: "/bin/true"}).Create(context.Background(), validConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.DialAgent(context.Background()); err == nil {
		t.Error("DialAgent before Start succeeded")
	}
	if !errors.Is(vm.Resize(context.Background(), 2, 512), hypervisor.ErrNotSupported) {
		t.Error("Resize should be ErrNotSupported")
	}
	for i := 0; i < 2; i++ {
		if err := vm.Stop(context.Background()); err != nil {
			t.Errorf("Stop #%d: %v", i, err)
		}
	}
	select {
	case <-vm.Done():
	default:
		t.Error("Done open after Stop")
	}
	if vm.ExitError() != nil || len(vm.Pids()) != 0 {
		t.Errorf("ExitError %v, Pids %v", vm.ExitError(), vm.Pids())
	}
	if err := vm.Start(context.Background()); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func TestClaimCID(t *testing.T) {
	used := map[uint64]bool{}
	set := func(cid uint64) error {
		if cid < minGuestCID || cid > maxGuestCID {
			t.Fatalf("cid %d out of range", cid)
		}
		if used[cid] {
			return unix.EADDRINUSE
		}
		used[cid] = true
		return nil
	}
	a, err := claimCID("sandbox-a", set)
	if err != nil {
		t.Fatal(err)
	}
	// Same id again (e.g. a restarted sandbox whose old VM still runs):
	// the derived CID is taken, the next one is used.
	b, err := claimCID("sandbox-a", set)
	if err != nil || b == a {
		t.Fatalf("second claim: %d, %v (first %d)", b, err, a)
	}
	if _, err := claimCID("x", func(uint64) error { return unix.EADDRINUSE }); err == nil {
		t.Error("all taken: no error")
	}
	if _, err := claimCID("x", func(uint64) error { return unix.ENOTTY }); err == nil || !strings.Contains(err.Error(), "set guest CID") {
		t.Errorf("ioctl failure: %v", err)
	}
}

func TestCheckThisHost(t *testing.T) {
	for _, r := range New(Options{}).Check(context.Background()) {
		t.Logf("%-14s ok=%-5v %s %s", r.Name, r.OK, r.Detail, r.Fix)
		if !r.OK && r.Fix == "" {
			t.Errorf("%s failed without a fix", r.Name)
		}
	}
}
