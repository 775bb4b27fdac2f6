// Package guestinit prepares the pod VM for podvm-agent when the agent is
// PID 1 of the initramfs: a root that runc can pivot away from, the pseudo
// filesystems, cgroup v2 with its controllers delegated, the console as
// stdio and the loopback interface.
//
// Every step is best effort. A failed step is logged and the next one runs:
// an agent that exits as PID 1 panics the kernel, while a half-prepared
// guest can still serve GuestDetails and let the host read the console.
package guestinit

import (
	"context"
	"os"

	"github.com/containerd/log"
)

// IsPID1 reports whether the agent is the guest's init. Tests on the host
// are not, and must not touch the host's mounts, hostname or network.
func IsPID1() bool {
	return os.Getpid() == 1
}

// step is one named part of Setup.
type step struct {
	name string
	run  func() error
}

// Setup performs every PID-1-only step in order. It never fails: each error
// is logged with the step's name.
func Setup(ctx context.Context) {
	steps := []step{
		// First: the bind mount it creates is not recursive, so it must
		// come before any other mount.
		{"make / pivotable", reroot},
		{"mount filesystems", mountAll},
		{"attach console", attachConsole},
		{"create /dev links", devLinks},
		{"enable cgroup controllers", func() error { return enableControllers(cgroupRoot) }},
		{"bring up lo", func() error { return linkUp("lo") }},
		{"set PATH", func() error { return os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") }},
	}
	for _, s := range steps {
		start := BootTime()
		if err := s.run(); err != nil {
			log.G(ctx).WithError(err).Errorf("guest setup: %s", s.name)
		}
		log.G(ctx).Debugf("guest setup: %s took %.1fms", s.name, float64(BootTime()-start)/1e6)
	}
}
