// Package reaper makes podvm-agent reap every exited child and orphan, which
// is PID 1's duty, without stealing the exit statuses that runc invocations
// and container inits are waited for.
//
// It follows containerd's shim: one SIGCHLD handler reaps with wait4(-1) and
// fans each exit out to subscribers, and go-runc's Monitor is pointed at the
// same fan-out so that go-runc never calls wait itself on a pid the handler
// may already have reaped.
package reaper

import (
	"fmt"
	"os"
	"os/signal"
	"sync"

	ctrreaper "github.com/containerd/containerd/v2/pkg/sys/reaper"
	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

var (
	once     sync.Once
	startErr error
)

// Start installs the SIGCHLD handler and go-runc's Monitor. When the agent is
// not PID 1 (tests on the host) it also makes the process a child subreaper,
// so that container inits, orphaned when `runc create` exits, are reparented
// to it rather than to the host's init. Start is idempotent.
//
// After Start, every child the process starts must be started and waited
// through runc.Monitor; a plain exec.Cmd.Wait would race the handler.
func Start() error {
	once.Do(func() {
		if os.Getpid() != 1 {
			if err := ctrreaper.SetSubreaper(1); err != nil {
				startErr = fmt.Errorf("become child subreaper: %w", err)
				return
			}
		}
		signals := make(chan os.Signal, 32)
		signal.Notify(signals, unix.SIGCHLD)
		runc.Monitor = ctrreaper.Default
		go func() {
			for range signals {
				// An error here is ECHILD-like noise after a burst of
				// exits; the next SIGCHLD reaps whatever is left.
				_ = ctrreaper.Reap()
			}
		}()
	})
	return startErr
}

// Subscribe returns a channel that receives every reaped exit from now on.
// The subscriber must keep draining it: the handler retries delivery until
// every subscriber has taken an exit, and waits up to a second for that
// before it reaps the next one.
func Subscribe() chan runc.Exit {
	return ctrreaper.Default.Subscribe()
}

// Unsubscribe stops delivery to a channel from Subscribe and closes it.
func Unsubscribe(c chan runc.Exit) {
	ctrreaper.Default.Unsubscribe(c)
}
