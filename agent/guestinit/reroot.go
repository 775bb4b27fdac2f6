package guestinit

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// rerootDir is where / is bind-mounted for a moment; it is removed again.
const rerootDir = "/.podvm-root"

// reroot moves the agent onto a bind mount of the initramfs root.
//
// The initramfs is the kernel's "rootfs" mount, which has no parent mount,
// and pivot_root(2) refuses with EINVAL when the caller's root is such a
// mount. runc pivots into every container's root from the agent's root, so
// without this step every container would fail (or need runc --no-pivot,
// which is escapable). A bind mount of / moved onto / has rootfs as its
// parent; chrooting into it is the switch_root dance without copying files.
func reroot() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("statfs /: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return nil // a real root filesystem already has a parent mount
	}
	if err := os.Mkdir(rerootDir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	if err := unix.Mount("/", rerootDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind / to %s: %w", rerootDir, err)
	}
	if err := unix.Chdir(rerootDir); err != nil {
		return fmt.Errorf("chdir %s: %w", rerootDir, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", rerootDir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// The directory is no longer a mount point; it is just clutter now.
	_ = os.Remove(rerootDir)
	return nil
}
