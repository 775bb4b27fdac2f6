package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
)

// ShareMounts bind-mounts each host source into the shared directory where
// the guest spec expects it (volumes, configMaps, secrets, /etc/hosts...).
// Only these paths become visible to the guest; read-only ones are remounted
// read-only on the host side too, so the guest cannot write through them.
// Undone with the container's rootfs by UnmountRootfs.
func (s *Sandbox) ShareMounts(ctx context.Context, containerID string, shares []guestspec.SharedMount) error {
	for _, sh := range shares {
		target := filepath.Join(s.HostDir, sh.ShareRel)
		if err := shareOne(sh.HostSource, target, sh.ReadOnly, sh.ReceiveHostMounts); err != nil {
			return fmt.Errorf("share %s into the pod VM (for %s of container %s): %w", sh.HostSource, sh.Destination, containerID, err)
		}
	}
	return mirrorReadOnly(s.HostDir, s.SharedDir, containerID)
}

func shareOne(source, target string, readOnly, receiveHostMounts bool) error {
	st, err := os.Stat(source)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	// The mount point must be of the source's kind: a file over a file.
	if st.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	// Private, unless the volume asked for host mounts to propagate to it
	// (rslave/rshared): then a slave, which receives them and sends none.
	// The guest never sends mounts back: the VM boundary stops that.
	propagation := uintptr(unix.MS_PRIVATE)
	if receiveHostMounts {
		propagation = unix.MS_SLAVE
	}
	if err := unix.Mount("", target, "", propagation|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("set propagation: %w", err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount read-only: %w", err)
		}
	}
	return nil
}
