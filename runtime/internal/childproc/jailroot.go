package childproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// A Jail with OwnRoot gives the child a root directory of its own, in the
// spirit of Firecracker's jailer: a private mount namespace whose root is a
// read-only tmpfs holding only the Jail's paths (ReadOnly bound read-only,
// ReadWrite bound as they are), /dev/null and /dev/urandom, and a /proc of
// the child's own PID namespace. Go offers no hook between fork and exec to
// build it, so the shim re-executes itself as a small jailer (this file):
// the fork makes the namespaces, the jailer, still root, builds the root,
// pivots into it, drops to the Jail's identity and execs the child. Its
// instructions travel in jailerEnv; init runs it before anything else of
// the program, in the shim and in tests alike.

// jailerEnv holds the jailer's instructions (a jailerSpec as JSON).
const jailerEnv = "_PODVM_JAILER"

// jailerSpec is what the jailer needs.
type jailerSpec struct {
	Path      string   // the program to run
	Argv      []string // its argv, argv[0] included
	Env       []string
	UID, GID  uint32
	Groups    []uint32
	ReadOnly  []string
	ReadWrite []string
	// OutliveParent: no parent-death signal (SetOutliveParent).
	OutliveParent bool
}

func init() {
	spec := os.Getenv(jailerEnv)
	if spec == "" {
		return
	}
	// Thread attributes (bounding set, no_new_privs, Landlock, parent-death
	// signal) are set on this thread, and it is the one that execs.
	runtime.LockOSThread()
	err := runJailer(spec)
	fmt.Fprintf(os.Stderr, "podvm jailer: %v\n", err)
	os.Exit(127)
}

// jailerCommand turns cmd into the jailer's re-execution of this program,
// with the namespaces of a Jail with OwnRoot.
func jailerCommand(cmd *exec.Cmd, j *Jail) error {
	spec, err := json.Marshal(jailerSpec{
		Path: cmd.Path, Argv: cmd.Args, Env: cmd.Env, UID: j.UID, GID: j.GID, Groups: j.Groups,
		ReadOnly: j.ReadOnly, ReadWrite: j.ReadWrite, OutliveParent: outliveParent.Load(),
	})
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	// /proc/self/exe: the running binary even if an upgrade replaced its file.
	cmd.Path, cmd.Args = "/proc/self/exe", []string{"podvm-jailer"}
	cmd.Env = []string{jailerEnv + "=" + string(spec)}
	cmd.SysProcAttr.Cloneflags = jailNamespaces | syscall.CLONE_NEWNS
	return nil
}

// runJailer builds the root, pivots into it, drops privileges and execs;
// it returns only on failure.
func runJailer(specJSON string) error {
	var s jailerSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return fmt.Errorf("instructions: %w", err)
	}
	os.Unsetenv(jailerEnv)
	if err := buildRoot(s); err != nil {
		return err
	}
	if err := dropToJail(s); err != nil {
		return err
	}
	return fmt.Errorf("exec %s: %w", s.Path, syscall.Exec(s.Path, s.Argv, s.Env))
}

// newRoot is where the tmpfs root is built before the pivot: /tmp of the
// private mount namespace, which hides the host's /tmp from the child (the
// paths to bind are opened before it is mounted over).
const newRoot = "/tmp"

// buildRoot makes the child's root and pivots into it.
func buildRoot(s jailerSpec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	binds, err := openBinds(s)
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range binds {
			unix.Close(b.fd)
		}
	}()
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount the new root: %w", err)
	}
	for _, b := range binds {
		if err := b.mount(newRoot); err != nil {
			return err
		}
	}
	if err := mountProc(newRoot); err != nil {
		return err
	}
	return pivot(newRoot)
}

// bind is one path of the host put into the new root.
type bind struct {
	path     string
	fd       int    // O_PATH handle, opened before /tmp is covered
	link     string // the path is a symlink to this (merged /usr: /lib -> usr/lib)
	dir      bool
	readOnly bool
}

// jailDevices are the devices every jailed child gets.
var jailDevices = []string{"/dev/null", "/dev/urandom"}

// openBinds opens every path the root will hold. A path missing on this
// host is left out, as Landlock's rules leave it out.
func openBinds(s jailerSpec) ([]bind, error) {
	var out []bind
	add := func(paths []string, readOnly bool) error {
		for _, p := range paths {
			b := bind{path: filepath.Clean(p), readOnly: readOnly, fd: -1}
			if target, err := os.Readlink(b.path); err == nil {
				b.link = target
				out = append(out, b)
				continue
			}
			fd, err := unix.Open(b.path, unix.O_PATH|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return fmt.Errorf("open %s: %w", b.path, err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
				return fmt.Errorf("stat %s: %w", b.path, err)
			}
			b.fd, b.dir = fd, st.Mode&unix.S_IFMT == unix.S_IFDIR
			out = append(out, b)
		}
		return nil
	}
	if err := add(s.ReadOnly, true); err != nil {
		return out, err
	}
	if err := add(append(append([]string{}, jailDevices...), s.ReadWrite...), false); err != nil {
		return out, err
	}
	return out, nil
}

// mount puts b under root: a symlink as a symlink, anything else as a bind
// of the handle opened before, read-only if asked.
func (b bind) mount(root string) error {
	target := filepath.Join(root, b.path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("bind %s: %w", b.path, err)
	}
	if b.link != "" {
		if err := os.Symlink(b.link, target); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", b.path, err)
		}
		return nil
	}
	if err := makeMountPoint(target, b.dir); err != nil {
		return fmt.Errorf("bind %s: %w", b.path, err)
	}
	src := fmt.Sprintf("/proc/self/fd/%d", b.fd)
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", b.path, err)
	}
	if !b.readOnly {
		return nil
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", b.path, err)
	}
	return nil
}

// makeMountPoint creates an empty directory or file to bind onto, if none.
func makeMountPoint(target string, dir bool) error {
	if _, err := os.Lstat(target); err == nil {
		return nil
	}
	if dir {
		return os.Mkdir(target, 0o755)
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// mountProc mounts a /proc of the child's own PID namespace (QEMU reaches
// its fds as /proc/self/fd/N).
func mountProc(root string) error {
	dir := filepath.Join(root, "proc")
	if err := os.MkdirAll(dir, 0o555); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// pivot makes root the root directory, drops the old one and makes the
// new root's own tmpfs read-only.
func pivot(root string) error {
	old := filepath.Join(root, ".old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("pivot: drop the old root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the new root read-only: %w", err)
	}
	return nil
}

// dropToJail empties this thread's bounding set and sets no_new_privs
// (confineThread, without Landlock yet), switches every thread to the
// Jail's uid, gid and groups (which clears the capability sets), then
// applies Landlock and the parent-death signal the uid change cleared.
func dropToJail(s jailerSpec) error {
	if err := confineThread(&Jail{}); err != nil {
		return err
	}
	groups := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
		return fmt.Errorf("setresgid %d: %w", s.GID, err)
	}
	if err := syscall.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
		return fmt.Errorf("setresuid %d: %w", s.UID, err)
	}
	if len(s.ReadOnly)+len(s.ReadWrite) > 0 {
		if err := landlockThread(s.ReadOnly, append(append([]string{}, jailDevices...), s.ReadWrite...)); err != nil {
			return err
		}
	}
	if s.OutliveParent {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent-death signal: %w", err)
	}
	return nil
}
