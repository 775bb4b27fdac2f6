package crash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// A shim holds an exclusive flock on its sandbox's lock file from the
// moment it creates the state directory until Destroy has removed it. The
// kernel drops the lock when the shim dies, however it dies, so a state
// directory whose lock can be taken belongs to nobody: it is what a crash
// left (a killed shim that containerd never cleaned up after, a host that
// went down with a persistent state_dir). The next sandbox created on the
// host sweeps such directories away.
const lockFileName = "lock"

// staleAfter protects a directory that a shim has only just created: its
// lock file exists a moment before the shim has locked it.
const staleAfter = 10 * time.Second

// lockWait bounds how long a shim waits for its own new lock file, which a
// sweeping shim may hold for an instant while it finds the directory young.
const lockWait = 2 * time.Second

var errLocked = errors.New("in use by a running shim")

// tryLock opens dir's lock file (creating it if asked) and takes the lock
// without waiting; errLocked means another process holds it.
func tryLock(dir string, create bool) (*os.File, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), flags, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// LockNew takes the lock of a state directory this shim just created; the
// caller holds it (keeps the file open) while the sandbox exists.
func LockNew(dir string) (*os.File, error) {
	deadline := time.Now().Add(lockWait)
	for {
		f, err := tryLock(dir, true)
		if !errors.Is(err, errLocked) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Claim prepares dir for a new sandbox: if a crash left a
// directory of the same id behind, it is cleaned up first; if a live shim
// holds it, the sandbox exists and is not ours to create.
func Claim(ctx context.Context, dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	f, err := tryLock(dir, false)
	switch {
	case errors.Is(err, errLocked):
		return fmt.Errorf("sandbox state directory %s is %w", dir, errLocked)
	case errors.Is(err, os.ErrNotExist):
		// No lock file: left by a crash before it was made, or by a shim
		// older than the lock. A live VM of that id would still name the
		// directory on its command line.
		if pids := processesNaming(dir); len(pids) > 0 {
			return fmt.Errorf("sandbox state directory %s is in use by processes %v", dir, pids)
		}
	case err != nil:
		return err
	default:
		defer f.Close()
	}
	log.G(ctx).WithField("state_dir", dir).Warn("cleaning up what a crashed podvm shim left of this sandbox")
	return cleanupStateDir(dir)
}

// Sweep removes the state directories under root (the "sandboxes"
// directory) that no live shim holds, with everything recorded in them:
// VM processes, taps, host cgroups, mounts. Directories without a lock
// file (from shims older than the lock) are left alone: nothing proves
// they are dead. It returns the directories it removed.
func Sweep(ctx context.Context, root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var swept []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		f, err := tryLock(dir, false)
		if err != nil {
			continue // held by a live shim, or no lock file
		}
		if st, err := f.Stat(); err != nil || time.Since(st.ModTime()) < staleAfter {
			f.Close()
			continue
		}
		if err := cleanupStateDir(dir); err != nil {
			log.G(ctx).WithError(err).WithField("state_dir", dir).Warn("clean up stale podvm sandbox")
		} else {
			swept = append(swept, dir)
		}
		f.Close()
	}
	if len(swept) > 0 {
		log.G(ctx).WithField("state_dirs", swept).Warn("removed sandboxes that crashed podvm shims left behind")
	}
	return swept
}

// cleanupStateDir undoes everything a sandbox's state directory records,
// for a sandbox whose shim is gone: its VM processes (only those that
// still name the directory, so a recycled pid is left alone), the taps
// and tc filters in its pod network namespace, its host cgroup, every
// mount below it; then the directory itself.
func cleanupStateDir(dir string) error {
	var errs []error
	if err := killRecordedPids(dir); err != nil {
		errs = append(errs, err)
	}
	if ns, err := os.ReadFile(filepath.Join(dir, netnsFile)); err == nil && len(ns) > 0 {
		if err := network.Cleanup(string(ns)); err != nil {
			errs = append(errs, err)
		}
	}
	// After the processes: the kernel keeps a cgroup that holds one.
	if cg, err := os.ReadFile(filepath.Join(dir, cgroupFile)); err == nil && len(cg) > 0 {
		if err := hostcgroup.Remove(string(cg)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := share.UnmountAndRemove(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
