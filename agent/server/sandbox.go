package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/cgroup"
)

// WarmRuntime runs a throwaway container with the runtime asked for
// (container.Manager.WarmRuntime). It waits for a CreateSandbox in flight.
func (s *Service) WarmRuntime(ctx context.Context, req *api.WarmRuntimeRequest) (*api.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cfg.Containers.WarmRuntime(ctx, req.OciRuntime); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// ninePOptions: 9p2000.L over virtio; cache=mmap so that containers can
// mmap files shared (plain cache=none cannot); msize 512000, the most the
// virtio transport takes, instead of the small default cuts round trips
// for reads of binaries and layers.
const ninePOptions = "trans=virtio,version=9p2000.L,cache=mmap,msize=512000"

// sandbox is what CreateSandbox set up.
type sandbox struct {
	id         string
	mountPoint string // "" when no share is mounted
}

// CreateSandbox sets the hostname and mounts the shared filesystem. Calling
// it again for the same sandbox is harmless.
func (s *Service) CreateSandbox(ctx context.Context, req *api.CreateSandboxRequest) (*api.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox.id != "" && s.sandbox.id != req.SandboxId {
		return nil, fmt.Errorf("create sandbox %s: this guest already runs sandbox %s: %w", req.SandboxId, s.sandbox.id, errdefs.ErrFailedPrecondition)
	}
	if req.PidsLimit != nil && (req.PodCgroup == "" || *req.PidsLimit < 0) {
		return nil, fmt.Errorf("create sandbox %s: pids limit %d for pod cgroup %q: want a pod cgroup and a limit of 0 or more: %w",
			req.SandboxId, *req.PidsLimit, req.PodCgroup, errdefs.ErrInvalidArgument)
	}
	if err := s.cfg.Containers.SetRuntime(req.OciRuntime); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", req.SandboxId, err)
	}
	log.G(ctx).WithField("asked", req.OciRuntime).Infof("containers run with %s", s.cfg.Containers.Runtime())
	if req.Hostname != "" {
		if s.cfg.Guest {
			if err := unix.Sethostname([]byte(req.Hostname)); err != nil {
				return nil, fmt.Errorf("create sandbox %s: set hostname %q: %w", req.SandboxId, req.Hostname, err)
			}
		} else {
			log.G(ctx).Debugf("not PID 1: leaving the hostname, not setting %q", req.Hostname)
		}
	}
	if fs := req.SharedFs; fs != nil && s.sandbox.mountPoint == "" {
		if err := checkShare(fs); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", req.SandboxId, err)
		}
		if s.cfg.Guest {
			mp, err := mountShare(fs)
			if err != nil {
				return nil, fmt.Errorf("create sandbox %s: %w", req.SandboxId, err)
			}
			s.sandbox.mountPoint = mp
			log.G(ctx).Infof("mounted %s share %q on %s", fs.Type, fs.Tag, mp)
		} else {
			// Off the guest the mount point would be a host directory.
			log.G(ctx).Debugf("not PID 1: not mounting the %s share on %s", fs.Type, fs.MountPoint)
		}
	}
	if req.PidsLimit != nil {
		if err := s.limitPodPids(ctx, req.PodCgroup, *req.PidsLimit); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", req.SandboxId, err)
		}
	}
	s.sandbox.id = req.SandboxId
	return &api.Empty{}, nil
}

// limitPodPids creates the pod's guest cgroup with its pids limit; every
// container's cgroup is created below it, so the limit holds for the pod's
// processes together, as the kubelet's podPidsLimit does for a runc pod.
func (s *Service) limitPodPids(ctx context.Context, podCgroup string, limit int64) error {
	if !s.cfg.Guest {
		// Off the guest the cgroup tree is the host's.
		log.G(ctx).Debugf("not PID 1: not creating pod cgroup %s with pids.max %d", podCgroup, limit)
		return nil
	}
	if !cgroup.Unified() {
		return fmt.Errorf("pod cgroup %s: %s is not cgroup v2", podCgroup, cgroup.Mountpoint)
	}
	if err := cgroup.CreatePod(cgroup.Mountpoint, podCgroup, limit); err != nil {
		return err
	}
	log.G(ctx).Infof("pod cgroup %s: pids.max %d", podCgroup, limit)
	return nil
}

// checkShare refuses a share request mountShare could not honour.
func checkShare(fs *api.SharedFilesystem) error {
	if fs.MountPoint != "" && !filepath.IsAbs(fs.MountPoint) {
		return fmt.Errorf("shared filesystem mount point %q is not absolute: %w", fs.MountPoint, errdefs.ErrInvalidArgument)
	}
	switch fs.Type {
	case contract.SharedFSVirtiofs, "", contract.SharedFS9p:
		return nil
	}
	return fmt.Errorf("shared filesystem type %q (want virtiofs or 9p): %w", fs.Type, errdefs.ErrInvalidArgument)
}

// mountShare mounts the virtio-fs or 9p share and returns where.
func mountShare(fs *api.SharedFilesystem) (string, error) {
	tag := fs.Tag
	if tag == "" {
		tag = contract.SharedFSTag
	}
	mp := fs.MountPoint
	if mp == "" {
		mp = contract.GuestSharedDir
	}
	if !filepath.IsAbs(mp) {
		return "", fmt.Errorf("shared filesystem mount point %q is not absolute: %w", mp, errdefs.ErrInvalidArgument)
	}
	var fstype, data string
	switch fs.Type {
	case contract.SharedFSVirtiofs, "":
		fstype = contract.SharedFSVirtiofs
	case contract.SharedFS9p:
		fstype, data = contract.SharedFS9p, ninePOptions
	default:
		return "", fmt.Errorf("shared filesystem type %q (want virtiofs or 9p): %w", fs.Type, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return "", fmt.Errorf("create mount point: %w", err)
	}
	// No nosuid: container images may carry setuid binaries, which work
	// under runc; inside the VM they elevate within the VM only.
	if err := unix.Mount(tag, mp, fstype, unix.MS_NODEV, data); err != nil {
		return "", fmt.Errorf("mount %s tag %q on %s: %w", fstype, tag, mp, err)
	}
	return mp, nil
}

// DestroySandbox kills and removes every container and unmounts the share.
func (s *Service) DestroySandbox(ctx context.Context, req *api.DestroySandboxRequest) (*api.Empty, error) {
	var errs []error
	if err := s.cfg.Containers.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if mp := s.sandbox.mountPoint; mp != "" {
		if err := unix.Unmount(mp, 0); err != nil {
			// Something still holds a file open; let it go lazily
			// rather than fail the teardown.
			log.G(ctx).WithError(err).Warnf("unmount %s; detaching", mp)
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
		s.sandbox.mountPoint = ""
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("destroy sandbox %s: %w", req.SandboxId, err)
	}
	s.sandbox = sandbox{}
	return &api.Empty{}, nil
}
