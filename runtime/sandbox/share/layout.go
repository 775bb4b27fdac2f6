// Package share is the directory a pod VM shares with its guest: the
// shim mounts each container's root filesystem and volumes under mounts/,
// and the guest sees them through shared/, a read-only view. It also
// undoes those mounts, for a live sandbox and after a crash.
package share

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The state directory of a sandbox:
//
//	<state_dir>/sandboxes/<id>/
//	  lock        held (flock) by the shim that owns the sandbox (package crash)
//	  mounts/     where the shim mounts each container's rootfs and volumes
//	  shared/     a read-only view of mounts/, exported to the guest
//	  ...         sockets, pid files and logs of the VMM and virtiofsd
//
// The guest sees only shared/. It is a bind mount of mounts/ made read-only
// and a slave of it, so every mount the shim makes under mounts/ appears
// there (a rootfs read-write; a read-only volume is made read-only in the
// view too, see mirrorReadOnly), but the guest can create nothing at the
// top of the share:
// no file that fills the host's /run, and no symlink where the shim is
// about to create a mount point (which mount(2) would follow out of the
// share, the CVE-2020-2026 class of bug in Kata Containers).
const (
	mountsDirName = "mounts"
	sharedDirName = "shared"
)

// Share is the shared directory of one sandbox.
type Share struct {
	// HostDir is mounts/: where the shim mounts containers' root
	// filesystems and volumes; each mount appears in SharedDir.
	HostDir string
	// SharedDir is shared/, exported to the guest: a read-only view of
	// HostDir.
	SharedDir string
}

// At is the share of the sandbox whose state directory is stateDir.
func At(stateDir string) Share {
	return Share{HostDir: filepath.Join(stateDir, mountsDirName), SharedDir: filepath.Join(stateDir, sharedDirName)}
}

// SetUp creates mounts/ and shared/ and makes shared/ the guest's
// read-only view of mounts/.
//
// Both are searchable by everyone (0711, not listable), as containerd's own
// state directories are: in the guest, shared/ is the root of the virtio-fs
// mount, and the container init of a user namespace pod, root in its
// namespace but an unprivileged guest uid outside it, must pass through it
// to its root filesystem. On the host the sandbox's state directory above
// them stays 0700.
func (s Share) SetUp() error {
	hostDir, sharedDir := s.HostDir, s.SharedDir
	for _, d := range []string{hostDir, sharedDir} {
		if err := os.Mkdir(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o711); err != nil { // past the umask
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	steps := []struct {
		what          string
		source, where string
		flags         uintptr
	}{
		// mounts/ becomes a mount point with a peer group of its own
		// (made private first: a bind of a shared /run would otherwise
		// join /run's group and send our mounts to its peers).
		{"bind", hostDir, hostDir, unix.MS_BIND},
		{"make private", "", hostDir, unix.MS_PRIVATE},
		{"make shared", "", hostDir, unix.MS_SHARED},
		// shared/ joins that group, then becomes a slave: it receives
		// mounts made under mounts/ and sends none back.
		{"bind", hostDir, sharedDir, unix.MS_BIND},
		{"make slave", "", sharedDir, unix.MS_SLAVE},
		{"remount read-only", "", sharedDir, unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY},
	}
	for _, s := range steps {
		if err := unix.Mount(s.source, s.where, "", s.flags, ""); err != nil {
			return fmt.Errorf("share for the guest: %s %s: %w", s.what, s.where, err)
		}
	}
	return nil
}

// UnmountContainer detaches every mount of one container (rootfs and
// volumes, in both trees) and removes its directory. In shared/ it is the
// same directory seen read-only, gone with the one in mounts/; an older
// shim's, mounted straight into shared/, is removed there.
func (s Share) UnmountContainer(containerID string) error {
	host, shared := filepath.Join(s.HostDir, containerID), filepath.Join(s.SharedDir, containerID)
	errs := []error{unmountAll(shared), unmountAll(host)}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := removeUnmounted(host); err != nil {
		return err
	}
	if _, err := os.Lstat(shared); err == nil {
		return removeUnmounted(shared)
	}
	return nil
}

// UnmountAndRemove detaches every mount at or below dir, then removes dir.
func UnmountAndRemove(dir string) error {
	if err := unmountAll(dir); err != nil {
		return err
	}
	return removeUnmounted(dir)
}

// unmountAll detaches every mount at or below dir, deepest first.
func unmountAll(dir string) error {
	var errs []error
	for _, mp := range MountsUnder(dir) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// removeUnmounted removes each dir, but only once nothing is mounted below
// it any more: a volume that is still mounted there would otherwise be
// emptied on the host.
func removeUnmounted(dirs ...string) error {
	var errs []error
	for _, dir := range dirs {
		if left := MountsUnder(dir); len(left) > 0 {
			errs = append(errs, fmt.Errorf("not removing %s: still mounted there: %s", dir, strings.Join(left, ", ")))
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MountsUnder lists the mount points at or below dir, deepest first.
func MountsUnder(dir string) []string {
	var out []string
	for _, m := range mountInfoUnder(dir) {
		out = append(out, m.point)
	}
	return out
}

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo struct {
	id, parent int
	point      string
	options    []string // per-mount options: ro or rw, nosuid, nodev, ...
	unbindable bool     // no bind mount can copy it (rbind skips it)
}

// readMountInfo parses /proc/self/mountinfo, in its order.
func readMountInfo() ([]mountInfo, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountInfo(string(data)), nil
}

func parseMountInfo(data string) []mountInfo {
	var out []mountInfo
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		m := mountInfo{id: id, parent: parent, point: unescapeMountPath(f[4]), options: strings.Split(f[5], ",")}
		// Optional fields (shared:N, master:N, unbindable...) end at "-".
		for _, o := range f[6:] {
			if o == "-" {
				break
			}
			m.unbindable = m.unbindable || o == "unbindable"
		}
		out = append(out, m)
	}
	return out
}

// mountInfoUnder lists the mounts at or below dir, deepest first.
func mountInfoUnder(dir string) []mountInfo {
	all, _ := readMountInfo()
	var out []mountInfo
	for _, m := range all {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// mirrorReadOnly makes the guest's view of each read-only mount of a
// container read-only too. Propagation copies a mount into shared/ as it
// is when it is made, but a later remount (how a bind mount becomes
// read-only) changes only the original: without this the guest would
// write through virtiofsd to a volume the spec mounts read-only.
func mirrorReadOnly(hostDir, sharedDir, containerID string) error {
	var errs []error
	for _, m := range mountInfoUnder(filepath.Join(hostDir, containerID)) {
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		ro := false
		for _, o := range m.options {
			switch o {
			case "ro":
				ro = true
			case "nosuid":
				flags |= unix.MS_NOSUID
			case "nodev":
				flags |= unix.MS_NODEV
			case "noexec":
				flags |= unix.MS_NOEXEC
			}
		}
		if !ro {
			continue
		}
		view := filepath.Join(sharedDir, strings.TrimPrefix(m.point, hostDir))
		if err := unix.Mount("", view, "", flags, ""); err != nil {
			errs = append(errs, fmt.Errorf("make the guest's view %s read-only: %w", view, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
