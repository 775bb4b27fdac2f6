package virtiofsd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
)

// chooseSandbox is the namespace sandbox for the Rust daemon whenever the
// share receives mount propagation, else chroot; the C daemon keeps chroot.
// In its namespace virtiofsd turns every mount into a slave of the host's
// (MS_SLAVE|MS_REC): a container rootfs the shim binds under the share
// after virtiofsd started reaches it only through a peer group the share
// belongs to. The sandbox's share is such a mount already (package share:
// shared/ is a slave of mounts/, which is shared), so nothing is mounted
// here; a plain directory gets chroot, which sees every mount because it
// stays in the shim's mount namespace. Both choices that weaken are logged,
// with the reason.
func chooseSandbox(cfg Config, f Flavor, configured bool) Sandbox {
	l := log.L.WithField("virtiofsd", cfg.Binary)
	if f != FlavorRust {
		why := "configured"
		if !configured {
			why = "no Rust one at " + strings.Join(Candidates(), ", ")
		}
		l.Warnf("%s: the C virtiofsd (%s): chroot sandbox, keeps CAP_MKNOD and CAP_FSETID", cfg.Name, why)
		return SandboxChroot
	}
	ok, err := receivesPropagation(cfg.SharedDir)
	if err != nil || !ok {
		l.WithError(err).Warnf("%s: chroot sandbox: %s is not a mount that receives propagation", cfg.Name, cfg.SharedDir)
		return SandboxChroot
	}
	return SandboxNamespace
}

// receivesPropagation tells whether dir is a mount point in a peer group
// (shared:N) or the slave of one (master:N), per /proc/self/mountinfo. The
// last entry for dir is the one on top.
func receivesPropagation(dir string) (bool, error) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("mount propagation of %s: %w", dir, err)
	}
	defer f.Close()
	found, receives := false, false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mount-point options [optional...] - fstype ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		found, receives = true, false
		for _, opt := range fields[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") || strings.HasPrefix(opt, "master:") {
				receives = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("mount propagation of %s: %w", dir, err)
	}
	return found && receives, nil
}

// unescapeMountinfo undoes the kernel's octal escapes of space, tab,
// newline and backslash in mountinfo paths.
func unescapeMountinfo(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
