package virtiofsd

import (
	"fmt"
	"strconv"
)

// Flavor is which virtiofsd implementation a binary is.
type Flavor int

const (
	// FlavorC is the daemon shipped with QEMU up to 7.2 (-o key=value options).
	FlavorC Flavor = iota + 1
	// FlavorRust is the standalone Rust daemon (--long-options).
	FlavorRust
)

// Sandbox is how virtiofsd confines itself to the shared directory.
type Sandbox string

const (
	// SandboxNamespace: new mount, pid and network namespaces, pivoted into
	// the share. Not used yet: see chooseSandbox.
	SandboxNamespace Sandbox = "namespace"
	// SandboxChroot: the shim's namespaces with a chroot; sees every mount.
	SandboxChroot Sandbox = "chroot"
)

// RustHardening are the Rust daemon's options that shrink what a bug in it
// (reached by a hostile guest) gets on the host; see docs/security.md H4/H5.
//   - seccomp=kill: a syscall outside its list kills it (the default, said
//     to document intent).
//   - inode-file-handles=never: no open_by_handle_at, so it does not keep
//     CAP_DAC_READ_SEARCH (the capability behind the "shocker" escape).
//   - modcaps: no CAP_MKNOD (a guest makes no device node on the host; a
//     fifo or socket needs no capability), no CAP_FSETID (a guest write or
//     chown no longer keeps a setuid/setgid bit it could not set itself),
//     no CAP_SETFCAP (no file capabilities written from the guest).
//   - rlimit-nofile=0: keep the inherited limit instead of failing to raise
//     it (no CAP_SYS_RESOURCE) with a warning on every start.
var RustHardening = []string{
	"--seccomp=kill",
	"--inode-file-handles=never",
	"--modcaps=-mknod:-fsetid:-setfcap",
	"--rlimit-nofile=0",
}

// Args builds the daemon's command line, serving the listening socket passed
// as fd. Submounts are announced so the guest gives each bind mount its own
// st_dev instead of mixing inode numbers of different host filesystems. The
// C daemon always gets the chroot sandbox: it is the fallback, kept as it
// was.
func Args(f Flavor, cfg Config, sandbox Sandbox, fd int) ([]string, error) {
	if cfg.SharedDir == "" {
		return nil, fmt.Errorf("virtiofsd: no shared directory")
	}
	cache := cfg.Cache
	switch cache {
	case "":
		cache = "auto"
	case "auto", "always", "none":
	case "never":
		cache = "none"
	default:
		return nil, fmt.Errorf("virtiofsd: cache mode %q: want auto, always or none", cfg.Cache)
	}
	var args []string
	switch f {
	case FlavorC:
		args = []string{
			"--fd=" + strconv.Itoa(fd),
			"-o", "source=" + cfg.SharedDir,
			"-o", "cache=" + cache,
			"-o", "sandbox=chroot",
			"-o", "announce_submounts",
		}
	case FlavorRust:
		if cache == "none" {
			cache = "never"
		}
		switch sandbox {
		case SandboxNamespace, SandboxChroot:
		default:
			return nil, fmt.Errorf("virtiofsd: sandbox %q: want namespace or chroot", sandbox)
		}
		args = []string{
			"--fd=" + strconv.Itoa(fd),
			"--shared-dir=" + cfg.SharedDir,
			"--cache=" + cache,
			"--sandbox=" + string(sandbox),
			"--announce-submounts",
		}
		args = append(args, RustHardening...)
	default:
		return nil, fmt.Errorf("virtiofsd: unknown flavor %d", f)
	}
	return append(args, cfg.ExtraArgs...), nil
}
