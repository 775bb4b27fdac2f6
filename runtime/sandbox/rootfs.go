package sandbox

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/podvm/podvm/runtime/guestspec"
)

// MountRootfs mounts a container's root filesystem (as containerd's
// snapshotter prepared it) into the shared directory, where the guest sees it.
func (s *Sandbox) MountRootfs(ctx context.Context, containerID string, mounts []mount.Mount) error {
	if strings.Contains(containerID, "/") || containerID == "" || containerID == "." || containerID == ".." {
		return fmt.Errorf("container id %q cannot name a directory", containerID)
	}
	// Recorded first, so UnmountRootfs also cleans up a partial mount.
	s.mu.Lock()
	s.rootfs[containerID] = true
	s.mu.Unlock()
	if err := s.share.MountRootfs(containerID, mounts); err != nil {
		s.UnmountRootfs(containerID)
		return err
	}
	return nil
}

// SealRootfs makes a container's root filesystem read-only on the host too
// (share.Share.SealRootfs), for a spec with root.readonly; the shim calls
// it once the guest has created the container.
func (s *Sandbox) SealRootfs(containerID string) error {
	return s.share.SealRootfs(containerID)
}

// ShareMounts bind-mounts each host source into the shared directory where
// the guest spec expects it (share.Share.ShareMounts). Undone with the
// container's rootfs by UnmountRootfs.
func (s *Sandbox) ShareMounts(ctx context.Context, containerID string, shares []guestspec.SharedMount) error {
	return s.share.ShareMounts(containerID, shares)
}

// UnmountRootfs undoes MountRootfs and ShareMounts; unknown ids are
// ignored.
func (s *Sandbox) UnmountRootfs(containerID string) error {
	s.mu.Lock()
	ok := s.rootfs[containerID]
	delete(s.rootfs, containerID)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return s.share.UnmountContainer(containerID)
}
