package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/sandbox/share"
)

// ErrServing says a daemon keeps the pool: Clean leaves it (the daemon's
// stop ends its VMs), and a second daemon does not start.
var ErrServing = errors.New("podvm factory serve keeps this VM cache: stop it first (its stop ends the VMs no pod took)")

// lockName is the flock a daemon holds on its pool for its whole run,
// beside the pool (a file inside it would look like a leftover).
const lockName = "cache.lock"

// lockPool takes the pool lock of the runtime whose state_dir is
// stateDir, without waiting: ErrServing if a daemon holds it.
func lockPool(stateDir string) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("VM cache: %w", err)
	}
	path := filepath.Join(stateDir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("VM cache: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrServing)
		}
		return nil, fmt.Errorf("VM cache: lock %s: %w", path, err)
	}
	return f, nil
}

// unlockPool ends a lockPool: the lock file is removed while still held
// (a later daemon or clean makes a new one), then released.
func unlockPool(lock *os.File) {
	os.Remove(lock.Name())
	lock.Close()
}

// removeEmptyPool removes the pool directory at dir and its retired area
// if nothing is left in them (a VM still there keeps both).
func removeEmptyPool(dir string) {
	os.Remove(filepath.Join(dir, retiredName))
	os.Remove(dir)
}

// Clean ends what a daemon that is gone left of the pool of the runtime
// whose state_dir is stateDir: the VMs no pod took (they outlive their
// daemon, docs/factory.md section 8) and stray processes of VMs no
// sandbox holds, as a daemon's start would, and removes the pool. VMs
// pods took are left to their pods. ErrServing while a daemon runs.
func Clean(stateDir string, lg *log.Entry) error {
	if lg == nil {
		lg = log.L
	}
	lock, err := lockPool(stateDir)
	if err != nil {
		return err
	}
	defer unlockPool(lock)
	pool := PoolDir(stateDir)
	killStrays(pool, ClaimedGlob(stateDir), lg)
	k := &Keeper{Pool: Pool{Dir: pool}, Leftover: killLeftover, Remove: share.UnmountAndRemove, Log: lg}
	if err := k.sweep(); err != nil {
		return err
	}
	if err := os.RemoveAll(pool); err != nil {
		return fmt.Errorf("VM cache: %w", err)
	}
	return nil
}
