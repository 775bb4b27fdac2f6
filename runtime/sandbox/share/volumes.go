package share

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
)

// MountRootfs mounts a container's root filesystem (as containerd's
// snapshotter prepared it) at its place in the share, where the guest sees
// it. A failure may leave part of it: UnmountContainer undoes that too.
func (s Share) MountRootfs(containerID string, mounts []mount.Mount) error {
	target := filepath.Join(s.HostDir, guestspec.RootfsDir(containerID))
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create rootfs dir for %s: %w", containerID, err)
	}
	if err := mount.All(mounts, target); err != nil {
		return fmt.Errorf("mount rootfs of %s into the sandbox share: %w", containerID, err)
	}
	return mirrorReadOnly(s.HostDir, s.SharedDir, containerID)
}

// SealRootfs makes a container's root filesystem read-only on the host
// side too, in mounts/ and in the guest's view that virtiofsd serves: for
// a spec with root.readonly, so that a guest that owns its kernel cannot
// write the container's snapshot through virtiofsd either. It comes once
// the guest has created the container, because runc in the guest first
// creates the mount points the spec needs in the rootfs, as it does on a
// host before it makes the root read-only. An idmapped rootfs (a user
// namespace pod's) is sealed the same way: only the read-only attribute
// of the mount changes.
func (s Share) SealRootfs(containerID string) error {
	target := filepath.Join(s.HostDir, guestspec.RootfsDir(containerID))
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(unix.AT_FDCWD, target, 0, &attr); err != nil {
		return fmt.Errorf("make the rootfs of %s read-only on the host: %w", containerID, err)
	}
	return mirrorReadOnly(s.HostDir, s.SharedDir, containerID)
}

// ShareMounts bind-mounts each host source into the shared directory where
// the guest spec expects it (volumes, configMaps, secrets, /etc/hosts...).
// Only these paths become visible to the guest; read-only ones are remounted
// read-only on the host side too, so the guest cannot write through them.
// Undone with the container's rootfs by UnmountContainer.
func (s Share) ShareMounts(containerID string, shares []guestspec.SharedMount) error {
	for _, sh := range shares {
		target := filepath.Join(s.HostDir, sh.ShareRel)
		if err := shareOne(sh, target); err != nil {
			return fmt.Errorf("share %s into the pod VM (for %s of container %s): %w", sh.HostSource, sh.Destination, containerID, err)
		}
	}
	return mirrorReadOnly(s.HostDir, s.SharedDir, containerID)
}

func shareOne(sh guestspec.SharedMount, target string) error {
	src, err := openSource(sh)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", sh.HostSource, err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	// The mount point must be of the source's kind: a file over a file.
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
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
	// Alone: the mounts below the source are shared on their own, and a
	// recursive copy here would keep their mount points busy on the host.
	if len(sh.UIDMappings) > 0 || len(sh.GIDMappings) > 0 {
		if err := idmappedBind(sh, src, target); err != nil {
			return err
		}
	} else {
		bind := uintptr(unix.MS_BIND | unix.MS_REC)
		if sh.Alone {
			bind = unix.MS_BIND
		}
		// mount(2) through the fd: the same bind as from the path (peer
		// group and all, which propagation relies on), of the object
		// openSource checked.
		if err := unix.Mount(fdPath(src), target, "", bind, ""); err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
	}
	// Private, unless the volume asked for host mounts to propagate to it
	// (rslave/rshared): then a slave, which receives them and sends none.
	// The guest never sends mounts back: the VM boundary stops that.
	propagation := uintptr(unix.MS_PRIVATE)
	if sh.ReceiveHostMounts {
		propagation = unix.MS_SLAVE
	}
	if err := unix.Mount("", target, "", propagation|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("set propagation: %w", err)
	}
	if sh.ReadOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount read-only: %w", err)
		}
	}
	return nil
}

// Submounts lists the mounts a recursive bind of source would copy: those
// below it that a path reaches (not those hidden under another mount), each
// with its mount point relative to source, parents first. It is
// guestspec.Options.Submounts for the shim.
func Submounts(source string) ([]guestspec.Submount, error) {
	dir, err := filepath.EvalSymlinks(source)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, nil
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_MNT_ID, &stx); err != nil {
		return nil, fmt.Errorf("statx %s: %w", dir, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return nil, fmt.Errorf("statx %s: the kernel reports no mount id", dir)
	}
	mounts, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	return visibleSubmounts(mounts, int(stx.Mnt_id), dir), nil
}

// visibleSubmounts walks the mount tree from the mount holding dir (rootID)
// and lists the mounts strictly below dir that a path lookup reaches: at
// each mount point the last of the mounts stacked there, and nothing a
// sibling mounted over a parent directory hides.
func visibleSubmounts(mounts []mountInfo, rootID int, dir string) []guestspec.Submount {
	children := map[int][]mountInfo{}
	for _, m := range mounts {
		if m.id != m.parent {
			children[m.parent] = append(children[m.parent], m)
		}
	}
	below := func(p string) (string, bool) {
		if dir == "/" {
			return strings.TrimPrefix(p, "/"), p != "/" && strings.HasPrefix(p, "/")
		}
		rel, ok := strings.CutPrefix(p, dir+"/")
		return rel, ok && rel != ""
	}
	seen := map[int]bool{}
	var out []guestspec.Submount
	var walk func(id int)
	walk = func(id int) {
		if seen[id] {
			return
		}
		seen[id] = true
		// The mounts on this mount, by mount point; a later one at the
		// same point is the one a lookup finds.
		at := map[string]mountInfo{}
		for _, c := range children[id] {
			if _, ok := below(c.point); ok {
				at[c.point] = c
			}
		}
		points := make([]string, 0, len(at))
		for p := range at {
			points = append(points, p)
		}
		sort.Strings(points)
	next:
		for _, p := range points {
			for _, q := range points {
				if strings.HasPrefix(p, q+"/") {
					continue next // under a sibling mounted over its directory
				}
			}
			m := at[p]
			for stacked := true; stacked && !seen[m.id]; {
				stacked = false
				for _, c := range children[m.id] {
					if c.point == m.point {
						seen[m.id] = true
						m, stacked = c, true
					}
				}
			}
			if m.unbindable {
				continue // rbind leaves it out, and all below it
			}
			rel, _ := below(p)
			var opts []string
			for _, o := range m.options {
				switch o {
				case "ro", "nosuid", "nodev", "noexec":
					opts = append(opts, o)
				}
			}
			out = append(out, guestspec.Submount{Rel: rel, Options: opts})
			walk(m.id)
		}
	}
	walk(rootID)
	return out
}

// idmappedBind binds src (sh.HostSource, open) on target as an idmapped
// mount with the share's mappings (a user namespace pod's volume), as runc would in the
// container on a host: the guest's virtio-fs cannot be idmapped, so the
// guest gets the ids already shifted. The user namespace that carries the
// mappings comes from containerd's helper (a short-lived child process).
func idmappedBind(sh guestspec.SharedMount, src int, target string) error {
	userns, err := mount.GetUsernsFD(formatIDMappings(sh.UIDMappings), formatIDMappings(sh.GIDMappings))
	if err != nil {
		return fmt.Errorf("user namespace for an idmapped mount: %w", err)
	}
	defer userns.Close()
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
	setFlags := uint(unix.AT_EMPTY_PATH)
	if !sh.Alone {
		flags |= unix.AT_RECURSIVE
		setFlags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(src, "", flags)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", sh.HostSource, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(tree, "", setFlags, &attr); err != nil {
		return fmt.Errorf("idmap the mount of %s (the host filesystem must support idmapped mounts): %w", sh.HostSource, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the idmapped mount of %s: %w", sh.HostSource, err)
	}
	return nil
}

// formatIDMappings writes mappings as containerd's GetUsernsFD reads them:
// "container:host:size" entries separated by commas.
func formatIDMappings(maps []specs.LinuxIDMapping) string {
	parts := make([]string, len(maps))
	for i, m := range maps {
		parts[i] = fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
	}
	return strings.Join(parts, ",")
}
