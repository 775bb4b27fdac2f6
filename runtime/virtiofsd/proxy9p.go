package virtiofsd

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// ProxyHelperPath is QEMU's 9p proxy helper (Debian: qemu-system-common),
// the daemon of a share served by `-fsdev proxy`: it runs as root,
// chrooted into the share, and does the file operations of QEMU's 9p
// server, so that QEMU itself needs no access to the share and can run
// jailed. A VM template's clones share this way (docs/factory.md).
const ProxyHelperPath = "/usr/lib/qemu/virtfs-proxy-helper"

// proxyFD is the fd number of the helper's end of its socket pair.
const proxyFD = 3

// StartProxy9p starts virtfs-proxy-helper on cfg.SharedDir, with cfg's
// name, binary (default ProxyHelperPath), log, cgroup and set-id filter
// (setid.go; the helper serves guest root as host root, as virtiofsd
// does), with only its own capabilities and a no-op capset (proxycaps.go:
// without them it aborts), and returns it with the VMM's end of their socket pair, for
// `-fsdev proxy,sock_fd=`. cfg's socket, cache and extra arguments are
// not used. The helper exits when the VMM closes its end.
func StartProxy9p(cfg Config) (*Daemon, *os.File, error) {
	if cfg.Binary == "" {
		cfg.Binary = ProxyHelperPath
	}
	cfg.SocketPath = ""
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: socketpair: %w", cfg.Name, err)
	}
	helperEnd, vmmEnd := os.NewFile(uintptr(fds[0]), "9p proxy"), os.NewFile(uintptr(fds[1]), "9p proxy")
	// The child has its own copy after the fork.
	defer helperEnd.Close()
	proc, err := childproc.Start(childproc.Spec{
		Name:       cfg.Name,
		Path:       cfg.Binary,
		Args:       []string{"--path", cfg.SharedDir, "--fd", strconv.Itoa(proxyFD), "--nodaemon"},
		LogPath:    cfg.LogPath,
		ExtraFiles: []*os.File{helperEnd},
		Cgroup:     cfg.Cgroup,
		Confine:    cfg.confineProxyHelper(),
	})
	if err != nil {
		vmmEnd.Close()
		return nil, nil, err
	}
	return &Daemon{cfg: cfg, proc: proc}, vmmEnd, nil
}
