package guestinit

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// mount is one filesystem the guest needs.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode // of the target directory
}

const (
	nosuid = unix.MS_NOSUID
	nodev  = unix.MS_NODEV
	noexec = unix.MS_NOEXEC
)

// mounts lists the guest's filesystems in mount order: a target must exist
// in the filesystem mounted before it (/dev/pts lives in /dev).
var mounts = []mount{
	{"proc", "/proc", "proc", nosuid | nodev | noexec, "", 0o555},
	{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, "", 0o555},
	{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755", 0o755},
	// A private devpts instance whose ptmx anyone may open: runc allocates
	// container terminals through it.
	{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
	{"shm", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777", 0o1777},
	{"mqueue", "/dev/mqueue", "mqueue", nosuid | nodev | noexec, "", 0o755},
	{"cgroup2", cgroupRoot, "cgroup2", nosuid | nodev | noexec, "nsdelegate", 0o555},
	// runc's state and the container bundles live under /run.
	{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755", 0o755},
	{"tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777", 0o1777},
}

// mountAll mounts every entry of mounts, carrying on past failures so one
// missing kernel option does not cost the rest.
func mountAll() error {
	var errs []error
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// devLinks adds the /dev symlinks that udev or systemd would create and that
// programs expect (/dev/fd for bash process substitution, /dev/stdout).
func devLinks() error {
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
	}
	var errs []error
	for _, l := range links {
		if err := os.Symlink(l[0], l[1]); err != nil && !os.IsExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
