package virtiofsd

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The set-id filter is hole 5's setuid half (docs/security.md H5): a
// seccomp filter the shim installs under virtiofsd's own, so that nothing
// the guest asks can leave a setuid or setgid file on the host. virtiofsd
// serves guest root as host root: a chmod runs as uid 0 with CAP_FOWNER,
// and a file guest root creates is owned by uid 0, so a mode bit is all it
// takes. The filter refuses with EPERM
//   - chmod, fchmod, fchmodat, fchmodat2 whose mode has S_ISUID or S_ISGID;
//   - open, openat, creat that create (O_CREAT, O_TMPFILE) with such a mode,
//     and mknod, mknodat with one;
//
// and fails openat2 with ENOSYS, whose mode sits in a struct a filter
// cannot read: virtiofsd probes openat2 at start and, without it, opens
// with openat. It cannot tell a directory from a file, so guest `chmod g+s`
// on a directory is refused too. What it leaves alone: setid files the
// image brings (they are in lower layers, and overlayfs copies them up with
// their content; a write, truncate or chown then clears the bits, as
// virtiofsd lacks CAP_FSETID), and setgid inherited from a directory the
// host made (the kernel gives it to new subdirectories, never to files of
// a group their creator is not in).
//
// UID translation (virtiofsd's --translate-uid) was measured and rejected:
// see docs/security.md H5.

// setidBits are the mode bits the filter refuses.
const setidBits = unix.S_ISUID | unix.S_ISGID

// createFlags are the open flags that make open or openat create a file.
const createFlags = unix.O_CREAT | unix.O_TMPFILE&^unix.O_DIRECTORY

// modeArg is a syscall whose argument Mode is a mode to check; when Flags
// is not negative, only if argument Flags has one of createFlags.
type modeArg struct {
	Nr, Mode, Flags int
}

// argLow is the offset in struct seccomp_data of the low 32 bits of
// argument i (little-endian: both arches here are).
func argLow(i int) uint32 { return uint32(16 + 8*i) }

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	// x32 system calls on x86-64 are numbered from here (__X32_SYSCALL_BIT).
	x32Bit = 0x40000000
)

// setidFilter assembles the filter for audit architecture arch, the
// syscalls in args and openat2's number.
func setidFilter(arch uint32, args []modeArg, openat2 int) []unix.SockFilter {
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	ld := func(off uint32) unix.SockFilter { return stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
	ret := func(k uint32) unix.SockFilter { return stmt(unix.BPF_RET|unix.BPF_K, k) }
	p := []unix.SockFilter{
		ld(4), // arch
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, arch, 1, 0),
		ret(retENOSYS),
		ld(0), // nr
		jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, 0, 1),
		ret(retENOSYS),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(openat2), 0, 1),
		ret(retENOSYS),
	}
	// One block per syscall, entered when nr matches, left by a return:
	//   jne nr, next; [ld flags; jset createFlags, 0, allow;] ld mode;
	//   jset setidBits, eperm, allow
	for _, a := range args {
		block := []unix.SockFilter{}
		if a.Flags >= 0 {
			block = append(block, ld(argLow(a.Flags)), jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, createFlags, 0, 3))
		}
		block = append(block, ld(argLow(a.Mode)), jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, setidBits, 0, 1), ret(retEPERM), ret(retAllow))
		p = append(p, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(a.Nr), 0, uint8(len(block))))
		p = append(p, block...)
	}
	return append(p, ret(retAllow))
}

// installSetidFilter sets no_new_privs and installs the filter on the
// calling thread only (no TSYNC): the shim forks virtiofsd from a thread of
// its own (childproc.Spec.Confine), which the filter then confines too.
func installSetidFilter() error {
	filter, err := hostSetidFilter()
	if err != nil {
		return err
	}
	return installFilter("set-id filter", filter)
}

// installFilter sets no_new_privs and installs filter on the calling
// thread only.
func installFilter(name string, filter []unix.SockFilter) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%s: no_new_privs: %w", name, err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("%s: seccomp: %w", name, errno)
	}
	return nil
}

// confine is what runs on the forking thread before the daemon: the set-id
// filter, unless the operator allowed set-id modes.
func (c Config) confine() func() error {
	if c.AllowSetID {
		return nil
	}
	return installSetidFilter
}
