package share

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
)

// openSource opens what sh shares (O_PATH), so that the shim mounts that
// very object by its fd and looks no path up again.
//
// A volume's own source comes from the kubelet or the spec, as with runc:
// its symlinks are followed. A submount's path below its volume
// (sh.Under) runs through directories the guest may write, a read-write
// volume it shares with the host: a hostile guest can swap a directory
// there for a symlink to a host path while the shim resolves it. That
// part is resolved by openat2 beneath the volume and refused if any
// component is a symlink, so a share lands inside the volume or not at
// all.
func openSource(sh guestspec.SharedMount) (int, error) {
	if sh.Under == "" {
		fd, err := unix.Open(sh.HostSource, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", sh.HostSource, err)
		}
		return fd, nil
	}
	under := filepath.Clean(sh.Under)
	rel, ok := strings.CutPrefix(filepath.Clean(sh.HostSource), under+"/")
	if !ok || rel == "" {
		return -1, fmt.Errorf("%s is not below the volume %s", sh.HostSource, under)
	}
	root, err := unix.Open(under, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the volume %s: %w", under, err)
	}
	defer unix.Close(root)
	return openBeneath(root, under, rel)
}

// openBeneath opens rel under the directory root (named dir in errors)
// without following any symlink or leaving root.
func openBeneath(root int, dir, rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(root, rel, &how)
		switch {
		case err == nil:
			return fd, nil
		case (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)) && try < 16:
			continue // a rename raced the lookup; the kernel asks to retry
		case errors.Is(err, unix.ELOOP):
			return -1, fmt.Errorf("refusing %s below the volume %s: a component of its path is a symlink (the guest can write there): %w", rel, dir, err)
		case errors.Is(err, unix.EXDEV):
			return -1, fmt.Errorf("refusing %s below the volume %s: its path leads out of the volume: %w", rel, dir, err)
		default:
			return -1, fmt.Errorf("open %s below the volume %s: %w", rel, dir, err)
		}
	}
}

// fdPath names an open fd for mount(2): the kernel resolves it to the
// object the fd holds, not to a path looked up again.
func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }
