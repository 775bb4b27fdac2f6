// Package testenv is the testing.TB wrapper over internal/hostbed that
// podvm's integration tests use: a private containerd (hostbed.Stack), a
// locally built busybox image, and for CRI tests a containerd with CRI on
// (runc and podvm handlers), the test registry and a pod network of its
// own. Here a failure fails the test and what is started is stopped by the
// test's cleanup; everything else (leak listing, cgroups, processes) the
// tests take from hostbed itself.
//
// Tests that need what it provides call Require (and RequireCRI), which
// skips with the precise reason when the host lacks something, or fails
// instead when PODVM_REQUIRE_INTEGRATION=1 (set by `make test`, which
// installs everything, so a skip there would hide a bug).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Env is what the integration tests use; paths are absolute.
type Env struct {
	// Prefix is a podvm install (PODVM_PREFIX, from `make install-dev`).
	Prefix      string
	ShimBinary  string
	ConfigPath  string
	Containerd  string
	Ctr         string
	BusyboxPath string
}

// Require returns the environment or skips (fails under `make test`).
func Require(t testing.TB) *Env {
	t.Helper()
	e, missing := lookup()
	if missing != "" {
		if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("integration prerequisite missing: %s", missing)
		}
		t.Skipf("integration test needs %s", missing)
	}
	return e
}

func lookup() (*Env, string) {
	if os.Geteuid() != 0 {
		return nil, "root (containerd, mounts and QEMU need it)"
	}
	prefix := os.Getenv("PODVM_PREFIX")
	if prefix == "" {
		return nil, "PODVM_PREFIX pointing at a podvm install (run `make install-dev`, or use `make test`)"
	}
	prefix, _ = filepath.Abs(prefix)
	toolBin := filepath.Join(cacheDir(), "tools", "containerd-v2.4.2", "bin")
	e := &Env{
		Prefix:      prefix,
		ShimBinary:  filepath.Join(prefix, "bin", "containerd-shim-podvm-v2"),
		ConfigPath:  filepath.Join(prefix, "share", "podvm", "config.toml"),
		Containerd:  filepath.Join(toolBin, "containerd"),
		Ctr:         filepath.Join(toolBin, "ctr"),
		BusyboxPath: "/bin/busybox",
	}
	for _, f := range []struct{ path, fix string }{
		{e.ShimBinary, "`make install-dev`"},
		{e.ConfigPath, "`make install-dev`"},
		{filepath.Join(prefix, "share", "podvm", "vmlinux"), "`make install-dev`"},
		{e.Containerd, "`ci/install-tools.sh containerd`"},
		{e.Ctr, "`ci/install-tools.sh containerd`"},
		{e.BusyboxPath, "Debian package busybox-static (`ci/install-packages.sh`)"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Sprintf("%s (missing; %s makes it)", f.path, f.fix)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, "qemu-system-x86_64 (Debian package qemu-system-x86)"
	}
	return e, ""
}

// cacheDir is where ci/install-tools.sh caches the pinned host tools.
func cacheDir() string {
	if cache := os.Getenv("PODVM_CACHE"); cache != "" {
		return cache
	}
	return "/var/cache/podvm"
}
