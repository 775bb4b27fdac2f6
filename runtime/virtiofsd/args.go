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

// Args builds the daemon's command line, serving the listening socket passed
// as fd. The sandbox is chroot, not namespace, on purpose: in chroot mode
// virtiofsd stays in the shim's mount namespace, so the container rootfs bind
// mounts the shim makes under SharedDir after virtiofsd started are visible to
// the guest whatever the host's mount propagation is. Submounts are announced
// so the guest gives each bind mount its own st_dev instead of mixing inode
// numbers of different host filesystems.
func Args(f Flavor, cfg Config, fd int) ([]string, error) {
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
		args = []string{
			"--fd=" + strconv.Itoa(fd),
			"--shared-dir=" + cfg.SharedDir,
			"--cache=" + cache,
			"--sandbox=chroot",
			"--announce-submounts",
		}
	default:
		return nil, fmt.Errorf("virtiofsd: unknown flavor %d", f)
	}
	return append(args, cfg.ExtraArgs...), nil
}
