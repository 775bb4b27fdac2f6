package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// HostLock holds a host-wide lock named name until the test ends, for
// tests in different packages (which go test runs side by side) that must
// not overlap. The local Kubernetes clusters of the cluster and deploy
// tests are such: each takes down the kubelet's iptables chains only if
// they were not there before its own up, so two overlapping clusters leave
// them behind.
func HostLock(t *testing.T, name string) {
	t.Helper()
	path := filepath.Join("/run/lock", "podvm-test-"+name+".lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("host lock %s: %v", name, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("host lock %s: %v", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("host lock %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
}
