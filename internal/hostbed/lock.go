package hostbed

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockHost takes the host-wide lock /run/lock/podvm-<name>.lock, waiting
// for it, and returns its release. Programs that change one host resource
// by read-modify-write (/etc/hosts), or tests in different packages that
// go test runs side by side and that must not overlap (two local
// Kubernetes clusters each take down the kubelet's iptables chains only if
// they were not there before its own up), serialise on it. The lock goes
// with the process if it dies.
func LockHost(name string) (release func(), err error) {
	path := filepath.Join("/run/lock", "podvm-"+name+".lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("host lock %s: %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host lock %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("host lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}
