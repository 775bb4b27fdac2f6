package server

import (
	"context"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api"
)

// GuestDetails describes the guest. It reads nothing that can fail for long,
// so the shim can use it as the readiness probe. Its clock reading (NowNs)
// is taken last, to be as close as possible to the answer's departure.
func (s *Service) GuestDetails(ctx context.Context, _ *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	s.mu.Lock()
	resp := &api.GuestDetailsResponse{
		AgentVersion:   Version,
		AgentStartedNs: s.cfg.StartedNs,
		AgentReadyNs:   s.readyNs,
		Transport:      s.transport,
	}
	s.mu.Unlock()

	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		resp.KernelRelease = unix.ByteSliceToString(uts.Release[:])
	}
	if id, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		resp.BootId = strings.TrimSpace(string(id))
	}
	if online, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		resp.OnlineCpus = uint32(countCPUs(strings.TrimSpace(string(online))))
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		// The same figure as MemTotal in /proc/meminfo.
		resp.MemoryTotalBytes = uint64(si.Totalram) * uint64(si.Unit)
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &now); err == nil {
		resp.NowNs = now.Nano()
	}
	return resp, nil
}

// countCPUs counts the CPUs in a kernel CPU list such as "0-3,5,7-8".
func countCPUs(list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				continue
			}
		}
		n += b - a + 1
	}
	return n
}
