package guestinit

import "golang.org/x/sys/unix"

// BootTime returns nanoseconds of CLOCK_BOOTTIME: time since the guest
// kernel started, counting any time the VM was suspended. Boot phases are
// reported on this clock so the host can line them up with its own
// measurements of when the VMM started.
func BootTime() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
