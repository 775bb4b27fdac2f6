package container

import (
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// fixRuntimeLayout makes the processes the agent starts from now on (crun,
// and through it each container's init and exec processes up to their
// exec) map their code at the same addresses every time: it sets
// ADDR_NO_RANDOMIZE in the personality of every agent thread, which new
// threads and children inherit.
//
// Under TCG, QEMU 7.2 finds a translated block by its guest virtual address
// as well as its physical one (x86 is not translated pc-relative there), so code that a new process maps at new,
// randomized addresses is translated anew even though its pages are the
// same: every crun call translated the loader, libc and crun again
// (docs/benchmarks.md). crun is a position-independent executable with
// shared libraries, so address space randomization moved all of it; the
// agent and runc are static executables at fixed addresses and kept their
// translations.
//
// The containers' own processes keep randomization: the agent gives crun's
// config a personality (withPersonality), which crun sets in the init and
// in each exec process before it executes the container's program, and
// setting a personality clears the flag.
func fixRuntimeLayout() error {
	// ADDR_NO_RANDOMIZE of <linux/personality.h>, which x/sys/unix lacks.
	const addrNoRandomize = 0x0040000
	cur, _, errno := syscall.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	if errno != 0 {
		return fmt.Errorf("read the agent's personality: %w", errno)
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_PERSONALITY, cur|addrNoRandomize, 0, 0); errno != 0 {
		return fmt.Errorf("set ADDR_NO_RANDOMIZE for the OCI runtime: %w", errno)
	}
	return nil
}

// withPersonality gives spec the default personality (LINUX) unless it asks
// for one, so that crun sets it, and with it address space randomization,
// for the container's processes (fixRuntimeLayout).
func withPersonality(spec *specs.Spec) {
	if spec.Linux.Personality == nil {
		spec.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux}
	}
}
