package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// testEnv is what the integration tests use; paths are absolute.
type testEnv struct {
	// Prefix is a podvm install (PODVM_PREFIX, from `make install-dev`).
	Prefix      string
	ShimBinary  string
	ConfigPath  string
	Containerd  string
	Ctr         string
	BusyboxPath string
}

// requireEnv returns the environment or skips (fails under `make test`).
func requireEnv(t testing.TB) *testEnv {
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

func lookup() (*testEnv, string) {
	if os.Geteuid() != 0 {
		return nil, "root (containerd, mounts and QEMU need it)"
	}
	prefix := os.Getenv("PODVM_PREFIX")
	if prefix == "" {
		return nil, "PODVM_PREFIX pointing at a podvm install (run `make install-dev`, or use `make test`)"
	}
	prefix, _ = filepath.Abs(prefix)
	toolBin := filepath.Join(cacheDir(), "tools", "containerd-v2.4.2", "bin")
	e := &testEnv{
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
