package virtiofsd

import "golang.org/x/sys/unix"

// hostSetidFilter is the set-id filter for arm64, which has only the *at
// forms.
func hostSetidFilter() ([]unix.SockFilter, error) {
	return setidFilter(unix.AUDIT_ARCH_AARCH64, []modeArg{
		{Nr: unix.SYS_FCHMOD, Mode: 1, Flags: -1},
		{Nr: unix.SYS_FCHMODAT, Mode: 2, Flags: -1},
		{Nr: unix.SYS_FCHMODAT2, Mode: 2, Flags: -1},
		{Nr: unix.SYS_MKNODAT, Mode: 2, Flags: -1},
		{Nr: unix.SYS_OPENAT, Mode: 3, Flags: 2},
	}, unix.SYS_OPENAT2), nil
}

// hostCapsetNoopFilter is capsetNoopFilter for arm64.
func hostCapsetNoopFilter() ([]unix.SockFilter, error) {
	return capsetNoopFilter(unix.AUDIT_ARCH_AARCH64, unix.SYS_CAPSET), nil
}
