package guestinit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// attachConsole makes /dev/console the agent's stdin, stdout and stderr.
//
// The kernel gives init /dev/console only if the initramfs has that device
// node; otherwise the Go runtime falls back to /dev/null (and aborts if the
// initramfs has neither, see docs/agent.md). Once devtmpfs is mounted the node
// exists, so the agent's log reaches the VM's console either way.
func attachConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	defer unix.Close(fd)
	for target := 0; target <= 2; target++ {
		// Dup3 clears O_CLOEXEC on the copy: children started before
		// their own stdio is set inherit the console, not a closed fd.
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("dup /dev/console to fd %d: %w", target, err)
		}
	}
	return nil
}
