package server

import (
	"context"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// shareAhead is the share a cached VM mounts before its pod comes: the
// virtio-fs device its VM cache booted it with, whose virtiofsd serves the
// VM's own share directory, which a claim makes the pod's
// (docs/factory.md section 8), where the shim asks for it.
var shareAhead = &api.SharedFilesystem{Type: contract.SharedFSVirtiofs, Tag: contract.SharedFSTag, MountPoint: contract.GuestSharedDir}

// mountShareAhead mounts shareAhead, if the VM has it, so that
// CreateSandbox does not wait for the mount (the FUSE handshake with
// virtiofsd, the guest kernel's mount path run for the first time). It
// is for a VM no pod has: s.mu held, no sandbox. A VM without that
// device (a 9p share) keeps its share for CreateSandbox to mount.
func (s *Service) mountShareAhead(ctx context.Context) {
	if !s.cfg.Guest || s.sandbox.id != "" || s.sandbox.mountPoint != "" {
		return
	}
	begin := time.Now()
	mp, err := mountShare(shareAhead)
	if err != nil {
		log.G(ctx).WithError(err).Debug("no share to mount ahead; CreateSandbox mounts the one it is asked for")
		return
	}
	s.sandbox.mountPoint, s.sandbox.ahead = mp, true
	log.G(ctx).WithField("took", time.Since(begin).Round(time.Millisecond)).Infof("mounted the %s share %q on %s ahead of the pod", shareAhead.Type, shareAhead.Tag, mp)
}

// keepShareAhead decides, at CreateSandbox, whether the share mounted
// ahead is the one asked for; if not, it is unmounted, and CreateSandbox
// mounts the one asked for as in a VM that mounted none.
func (s *Service) keepShareAhead(ctx context.Context, asked *api.SharedFilesystem) error {
	if !s.sandbox.ahead {
		return nil
	}
	s.sandbox.ahead = false
	if sameShare(asked, shareAhead) {
		log.G(ctx).Infof("using the %s share mounted ahead on %s", shareAhead.Type, s.sandbox.mountPoint)
		return nil
	}
	log.G(ctx).Infof("the sandbox asks for another share than the one mounted ahead (%v); unmounting that", asked)
	if err := unix.Unmount(s.sandbox.mountPoint, 0); err != nil {
		return err
	}
	s.sandbox.mountPoint = ""
	return nil
}

// sameShare reports whether a request for asked would mount what is
// mounted for have, with CreateSandbox's defaults filled in.
func sameShare(asked, have *api.SharedFilesystem) bool {
	if asked == nil {
		return false
	}
	norm := func(fs *api.SharedFilesystem) [3]string {
		t, tag, mp := fs.Type, fs.Tag, fs.MountPoint
		if t == "" {
			t = contract.SharedFSVirtiofs
		}
		if tag == "" {
			tag = contract.SharedFSTag
		}
		if mp == "" {
			mp = contract.GuestSharedDir
		}
		return [3]string{t, tag, mp}
	}
	return norm(asked) == norm(have)
}
