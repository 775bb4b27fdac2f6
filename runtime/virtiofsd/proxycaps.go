package virtiofsd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// Debian's virtfs-proxy-helper (QEMU 7.2) aborts, silently, once a guest
// has created a file as root with a group other than root's and then
// creates one as anyone else (docs/factory.md, "The proxy helper's abort").
// The helper has two threads: QEMU's call_rcu thread, started by a
// constructor before main, keeps every capability the helper was started
// with, while main narrows its own (capabilities are per thread). For a
// creation as uid 0 with gid != 0 main sets its effective set to
// CAP_DAC_OVERRIDE while staying euid 0, so the kernel never gives the
// others back; the next switch to another gid needs CAP_SETGID, which
// main has lost and call_rcu has not. glibc applies setresgid to every
// thread and aborts when their results differ.
//
// The shim therefore starts the helper so that its threads' capabilities
// cannot diverge:
//   - it runs with only the capabilities it needs (proxyHelperCaps: six
//     of the seven it keeps, CAP_SYS_CHROOT for its chroot and CAP_SETPCAP,
//     with which it empties its bounding set), from exec; it keeps all
//     eight, as it cannot narrow them (next point). CAP_MKNOD, the
//     seventh, is left out: a guest makes no device node on the host, as
//     through virtiofsd (docs/security.md H5, T3); fifos and sockets need
//     no capability;
//   - capset(2) does nothing and succeeds (a seccomp filter), so main
//     never narrows its set;
//   - SECBIT_NO_SETUID_FIXUP (locked): its uid switches leave the
//     effective set alone, so CAP_DAC_OVERRIDE stays effective while it
//     creates a file as the guest's user, as the helper intends.
//
// CAP_SYS_CHROOT would let a helper taken over leave its chroot; Landlock
// (where the kernel has it) keeps it to the share and the read-only files
// it runs from wherever it goes (proxyReadOnly).
//
// The set-id filter (setid.go) is installed as before: the filter, not
// the lack of CAP_FSETID, keeps set-id modes off the host.

// proxyHelperCaps are the capabilities the helper keeps (its
// init_capabilities but CAP_MKNOD), CAP_SYS_CHROOT and CAP_SETPCAP.
var proxyHelperCaps = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SYS_CHROOT, unix.CAP_SETPCAP,
}

// The securebits of linux/securebits.h that x/sys/unix does not name.
const (
	secbitNoSetuidFixup       = 1 << 2
	secbitNoSetuidFixupLocked = 1 << 3
)

// confineProxyHelper runs on the thread that forks the helper.
func (c Config) confineProxyHelper() func() error {
	setid := c.confine()
	return func() error {
		if err := keepOnlyCaps(proxyHelperCaps); err != nil {
			return fmt.Errorf("proxy helper: %w", err)
		}
		bits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
		if err != nil {
			return fmt.Errorf("proxy helper: securebits: %w", err)
		}
		if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits)|secbitNoSetuidFixup|secbitNoSetuidFixupLocked, 0, 0, 0); err != nil {
			return fmt.Errorf("proxy helper: securebits: %w", err)
		}
		if err := installCapsetNoop(); err != nil {
			return fmt.Errorf("proxy helper: %w", err)
		}
		if err := childproc.Landlock(proxyReadOnly(c.Binary), []string{c.SharedDir}); err != nil {
			return fmt.Errorf("proxy helper: %w", err)
		}
		if setid != nil {
			return setid()
		}
		return nil
	}
}

// proxyReadOnly are the paths the helper reads and executes: binary, its
// libraries and the loader's cache (merged /usr: /lib is /usr/lib), and
// /dev/null, its stdin. Paths missing here are left out.
func proxyReadOnly(binary string) []string {
	var paths []string
	for _, p := range []string{binary, "/usr/lib", "/lib", "/lib64", "/etc/ld.so.cache", os.DevNull} {
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, p)
		}
	}
	return paths
}

// keepOnlyCaps narrows the calling thread's bounding set to keep and
// empties its inheritable and ambient sets, so that a root program it
// execs starts with keep, permitted and effective, and nothing else.
func keepOnlyCaps(keep []int) error {
	wanted := map[int]bool{}
	for _, c := range keep {
		wanted[c] = true
	}
	for c := 0; c < 64; c++ {
		if wanted[c] {
			continue
		}
		// EINVAL: a capability this kernel does not know.
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	return nil
}

// capsetNoopFilter makes capset(2) return 0 without effect for audit
// architecture arch, whose capset is number nr; other calls, and other
// architectures, are allowed (the set-id filter refuses those).
func capsetNoopFilter(arch uint32, nr int) []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 0, Jf: 3},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(nr), Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO}, // errno 0: success
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
}

// installCapsetNoop sets no_new_privs and installs capsetNoopFilter on the
// calling thread.
func installCapsetNoop() error {
	filter, err := hostCapsetNoopFilter()
	if err != nil {
		return err
	}
	return installFilter("capset filter", filter)
}
