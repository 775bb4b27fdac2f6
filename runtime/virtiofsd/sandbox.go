package virtiofsd

import (
	"strings"

	"github.com/containerd/log"
)

// chooseSandbox is chroot, for both daemons, though the Rust one's namespace
// sandbox (new mount, pid and network namespaces) is the stronger. Measured
// (docs/security.md H4): in its namespace virtiofsd holds copies of the
// share's mounts made as the shim binds them, and the read-only remount the
// shim then applies to a read-only volume (package share, mirrorReadOnly)
// is a per-mount flag that does not propagate: a privileged guest could write
// a read-only volume through the raw share (TestBoundarySharedDirIntegration
// fails with "ro-share:writable"). In chroot mode virtiofsd stays in the
// shim's mount namespace and serves the read-only mounts themselves. Without
// CAP_SYS_CHROOT and CAP_SYS_ADMIN (RustHardening) it cannot leave the
// chroot. The C daemon's fallback is logged, with the reason.
func chooseSandbox(cfg Config, f Flavor, configured bool) Sandbox {
	if f != FlavorRust {
		why := "configured"
		if !configured {
			why = "no Rust one at " + strings.Join(Candidates(), ", ")
		}
		log.L.WithField("virtiofsd", cfg.Binary).Warnf("%s: the C virtiofsd (%s): keeps CAP_MKNOD and CAP_FSETID, see docs/security.md H5", cfg.Name, why)
	}
	return SandboxChroot
}
