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
	"os/signal"
	"syscall"

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
		{"ignore termination signals", ignoreTermination},
	}
	for _, s := range steps {
		start := BootTime()
		if err := s.run(); err != nil {
			log.G(ctx).WithError(err).Errorf("guest setup: %s", s.name)
		}
		log.G(ctx).Debugf("guest setup: %s took %.1fms", s.name, float64(BootTime()-start)/1e6)
	}
}

// ignoreTermination makes the agent deaf to SIGTERM, SIGINT and SIGHUP, as
// an init is: Go's default for them is to exit, and PID 1 exiting panics
// the guest kernel, so a privileged container in the guest's pid namespace
// sending one (kill -TERM 1) would take the whole pod VM down. They are
// caught and dropped rather than ignored: an ignored disposition would be
// inherited through exec by runc and every container process, which must
// see SIGTERM as usual. SIGQUIT and SIGABRT still crash the agent with its
// goroutines on the console: they are how one asks for that dump.
func ignoreTermination() error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			log.L.Warnf("PID 1 ignores %v", sig)
		}
	}()
	return nil
}
