package virtiofsd

import "golang.org/x/sys/unix"

// hostSetidFilter is the set-id filter for x86-64.
func hostSetidFilter() ([]unix.SockFilter, error) {
	return setidFilter(unix.AUDIT_ARCH_X86_64, []modeArg{
		{Nr: unix.SYS_CHMOD, Mode: 1, Flags: -1},
		{Nr: unix.SYS_FCHMOD, Mode: 1, Flags: -1},
		{Nr: unix.SYS_FCHMODAT, Mode: 2, Flags: -1},
		{Nr: unix.SYS_FCHMODAT2, Mode: 2, Flags: -1},
		{Nr: unix.SYS_MKNOD, Mode: 1, Flags: -1},
		{Nr: unix.SYS_MKNODAT, Mode: 2, Flags: -1},
		{Nr: unix.SYS_CREAT, Mode: 1, Flags: -1},
		{Nr: unix.SYS_OPEN, Mode: 2, Flags: 1},
		{Nr: unix.SYS_OPENAT, Mode: 3, Flags: 2},
	}, unix.SYS_OPENAT2), nil
}

// hostCapsetNoopFilter is capsetNoopFilter for x86-64.
func hostCapsetNoopFilter() ([]unix.SockFilter, error) {
	return capsetNoopFilter(unix.AUDIT_ARCH_X86_64, unix.SYS_CAPSET), nil
}
