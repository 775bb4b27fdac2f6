// Package vmtest holds what the integration tests that boot real VMs share:
// finding the guest kernel, building a busybox initramfs, and the rule that
// a missing prerequisite skips the test but fails it under `make test`
// (PODVM_REQUIRE_INTEGRATION=1, where make installed everything); and, for
// the unit tests that mount, NeedRoot.
package vmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DevKernel is where a developer may keep a kernel outside an install.
const DevKernel = "/var/cache/podvm/dev/vmlinux"

// Missing skips, or fails when the environment promises everything is there.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration prerequisite missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedRoot skips tests that mount (or need root otherwise).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts need root")
	}
}

// Kernel finds the guest kernel: $PODVM_TEST_KERNEL, else the install at
// $PODVM_PREFIX, else DevKernel.
func Kernel(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PODVM_TEST_KERNEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			Missing(t, "PODVM_TEST_KERNEL: %v", err)
		}
		return p
	}
	var tried []string
	if prefix := os.Getenv("PODVM_PREFIX"); prefix != "" {
		tried = append(tried, filepath.Join(prefix, "share/podvm/vmlinux"))
	}
	tried = append(tried, DevKernel)
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Missing(t, "no guest kernel at %s: run `make install-dev` or set PODVM_TEST_KERNEL", strings.Join(tried, " or "))
	return ""
}

// BusyboxInitramfs writes a newc cpio archive holding static busybox with
// the given applets linked in /bin, the directories init mounts on, and
// files (path relative to the root -> content, mode 0755; "init" is /init).
func BusyboxInitramfs(t testing.TB, applets []string, files map[string]string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		Missing(t, "busybox not found: apt-get install busybox-static")
	}
	if out, _ := exec.Command("file", "-L", bb).Output(); len(out) > 0 && !strings.Contains(string(out), "statically linked") {
		Missing(t, "%s is not static: apt-get install busybox-static", bb)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "proc", "sys", "dev", "mnt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "initramfs.cpio")
	cmd := exec.Command("sh", "-c", "find . | busybox cpio -o -H newc > "+out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v: %s", err, b)
	}
	return out
}

// Tail returns at most the last n bytes of a log file, for failure messages.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
