// Package hold keeps a VM template's guest RAM in a sealed memfd
// (docs/factory.md, section 6): one holder process per template reads the
// template's RAM file into a memfd once, seals it against every change
// (F_SEAL_WRITE, F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_SEAL) and then only
// waits. A clone's VMM maps that memfd private, so no clone, whatever it
// runs as, can change what later clones start from, and a jailed VMM needs
// no path to the template.
//
// The holder is this program re-executed (holder.go): detached from the
// shim that started it (its own session, no parent-death signal, its own
// host cgroup and log), since a template outlives every pod. Shims find it
// by its pid file in the template directory and take the memfd with
// pidfd_getfd(2); a lock the holder keeps for its life says it is alive.
// It ends when the template is removed, when an input the template was
// made from (guest image, VMM binary) changes, which also removes the
// stale template, or on SIGTERM (Stop).
package hold

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Files in the template directory.
const (
	// PidName holds "<pid> <fd>\n": the holder and its memfd's fd number.
	PidName = "hold.pid"
	// LockName is flocked by the holder for its life.
	LockName = "hold.lock"
	// LogName is the holder's log.
	LogName = "hold.log"
)

// Seals are the seals of a held memfd: its content and size are fixed,
// and no seal can be added or removed any more.
const Seals = unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL

// MemfdName names every held memfd: a clone's VMM maps it as
// "/memfd:podvm-template (deleted)", which is how a reader of its mappings
// (the density bench) tells the template's RAM.
const MemfdName = "podvm-template"

// Cgroup is the host cgroup of every holder: the factory's own, charged
// for the templates' memory rather than any pod or shim.
const Cgroup = "/podvm-factory"

// ErrNoHolder says no holder runs for the template.
var ErrNoHolder = errors.New("no holder runs for this VM template")

// Spec is one template's holder.
type Spec struct {
	// Dir is the template directory; RAM is the RAM file's name in it.
	Dir, RAM string
	// Mark is the file whose removal ends the holder (the template's
	// completion mark): the template is gone.
	Mark string
	// Inputs are files the template was made from; when one changes
	// (size, mtime) or goes, the template is stale: the holder removes
	// it and ends.
	Inputs []string
	// Poll is how often the holder looks whether the template is gone
	// or stale; 0 is pollEvery.
	Poll time.Duration
	// Cgroup is the holder's host cgroup path (hostcgroup.ParsePath
	// form); empty leaves it in the starter's.
	Cgroup string
}

// Take returns a copy of the memfd the template's holder keeps, checked to
// be sealed with Seals and as large as the RAM file: ErrNoHolder if none
// runs.
func Take(dir string, size int64) (*os.File, error) {
	raw, err := os.ReadFile(filepath.Join(dir, PidName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoHolder
	}
	if err != nil {
		return nil, fmt.Errorf("VM template holder: %w", err)
	}
	pid, fd, err := parsePid(string(raw))
	if err != nil {
		return nil, fmt.Errorf("VM template holder: %s: %w", PidName, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, ErrNoHolder
	}
	if err != nil {
		return nil, fmt.Errorf("VM template holder: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	// With the pidfd held, pid names this process for good: it is the
	// holder if the lock is still held, the pid file still names it and
	// so does the process itself.
	if !locked(filepath.Join(dir, LockName)) || !isHolder(pid, dir) {
		return nil, ErrNoHolder
	}
	if again, err := os.ReadFile(filepath.Join(dir, PidName)); err != nil || string(again) != string(raw) {
		return nil, ErrNoHolder
	}
	mfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, ErrNoHolder
	}
	if err != nil {
		return nil, fmt.Errorf("VM template holder: pidfd_getfd of pid %d fd %d: %w", pid, fd, err)
	}
	f := os.NewFile(uintptr(mfd), "memfd of "+filepath.Join(dir, PidName))
	if err := checkHeld(f, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("VM template holder (pid %d): %w", pid, err)
	}
	return f, nil
}

// checkHeld checks f is sealed with Seals and has size bytes.
func checkHeld(f *os.File, size int64) error {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return fmt.Errorf("F_GET_SEALS: %w", err)
	}
	if seals&Seals != Seals {
		return fmt.Errorf("its memfd has seals %#x, want %#x", seals, Seals)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("its memfd has %d bytes, the RAM file %d", st.Size(), size)
	}
	return nil
}

func parsePid(s string) (pid, fd int, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%q: want \"<pid> <fd>\"", s)
	}
	if pid, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, err
	}
	if fd, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, err
	}
	return pid, fd, nil
}

// locked says whether someone holds path's flock (the holder).
func locked(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	return errors.Is(err, unix.EWOULDBLOCK)
}

// Running is the pid of the template's holder, or 0 if none runs.
func Running(dir string) int {
	raw, err := os.ReadFile(filepath.Join(dir, PidName))
	if err != nil || !locked(filepath.Join(dir, LockName)) {
		return 0
	}
	pid, _, err := parsePid(string(raw))
	if err != nil {
		return 0
	}
	return pid
}

// isHolder says whether process pid is the holder of dir, by its command
// line (Start's: holderArg0 dir).
func isHolder(pid int, dir string) bool {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	return len(argv) == 2 && argv[0] == holderArg0 && filepath.Clean(argv[1]) == filepath.Clean(dir)
}

// stopWait bounds how long Stop waits for a holder to go after SIGTERM.
const stopWait = 5 * time.Second

// Stop ends the template's holder, if one runs in this PID namespace,
// and waits until it has exited. (A holder Stop cannot see ends by itself
// once its template is removed.)
func Stop(dir string) error {
	pid := Running(dir)
	if pid == 0 {
		return nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil // gone already
	}
	defer unix.Close(pidfd)
	// In another PID namespace (an installer's container) the number
	// names some other process, or none: only the holder is signalled.
	if !locked(filepath.Join(dir, LockName)) || !isHolder(pid, dir) {
		return nil
	}
	if err := unix.PidfdSendSignal(pidfd, unix.SIGTERM, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop VM template holder %d: %w", pid, err)
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(stopWait/time.Millisecond))
	if err != nil || n == 0 {
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		return fmt.Errorf("stop VM template holder %d: still running %v after SIGTERM (killed)", pid, stopWait)
	}
	return nil
}
