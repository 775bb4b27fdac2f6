package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
)

// VM is a cached VM as the process that booted it holds it.
type VM interface {
	// Stop stops the VM and its helpers. The keeper calls it only for a
	// VM still its own: in the pool or in the retired area.
	Stop(ctx context.Context) error
	// Release is called once a pod claimed the VM: from then on the
	// keeper stops it only when the pod's shim is gone without having
	// stopped it (Keeper.Claimed). What the booter still holds for it
	// (the VMM's exit status, the jail uid's lock until the VMM exits)
	// stays.
	Release()
	// Done is closed when the VM died.
	Done() <-chan struct{}
}

// BootFunc boots a VM whose state lives in dir (the pool's directory of
// VM id) and returns its entry, ID and Booted filled by the keeper.
type BootFunc func(ctx context.Context, id, dir string) (Entry, VM, error)

// LeftoverFunc ends what remains of a VM a previous keeper left in the
// pool (it died or was killed): e is its entry, if it had one.
type LeftoverFunc func(dir string, e Entry, hasEntry bool)

// Keeper keeps Size VMs ready in Pool, replaces each one older than
// MaxAge or dead, and stops every VM still its own when its context ends.
type Keeper struct {
	Pool     Pool
	Size     int
	MaxAge   time.Duration // 0: no limit
	Boot     BootFunc
	Leftover LeftoverFunc // nil: leftovers' directories are only removed
	// Remove removes a VM's directory once its VM is stopped; nil is
	// os.RemoveAll (the daemon's unmounts the share first).
	Remove func(dir string) error
	// Claimed is a glob of where claims put VMs (a sandbox's "vm"
	// directory). A claimed VM found under none of its matches, still
	// running, was left by a shim that died: its sandbox's directory has
	// been cleaned up, so the keeper, the VM's parent, stops it. Empty:
	// claimed VMs are forgotten at once.
	Claimed string
	// Inherit, if set, makes a VM to watch of a claimed VM an earlier
	// keeper released (found under Claimed at the start), so that this
	// keeper stops it too once its sandbox is gone; nil: not watched.
	Inherit func(Entry) (VM, error)
	// Quiet is how long a refill waits after the last claim it saw: pods
	// are starting then, and a boot would take their CPU. 0: no wait.
	Quiet time.Duration
	// QuietMax bounds that wait, counted from when the pool fell short,
	// so that a steady stream of pods still gets VMs; 0 is
	// defaultQuietMax.
	QuietMax time.Duration
	Poll     time.Duration
	Log      *log.Entry

	vms        map[string]kept
	claimed    map[string]VM
	nextBoot   time.Time // after a failed boot, the next one waits until then
	lastClaim  time.Time
	shortSince time.Time // when the pool fell short of Size; zero when full
}

type kept struct {
	vm     VM
	booted time.Time
}

// pollEvery is how often a keeper looks at its VMs when Poll is 0.
const pollEvery = 200 * time.Millisecond

// defaultQuietMax is the longest a refill waits for a quiet moment when
// Keeper.QuietMax is 0.
const defaultQuietMax = 10 * time.Second

// bootRetry is how long a keeper waits after a failed boot: a boot that
// fails (a missing guest image, no memory) would fail again at once.
const bootRetry = 5 * time.Second

// Run sweeps what an earlier keeper left, then keeps the pool full until
// ctx ends; then it stops the VMs that are still its own.
func (k *Keeper) Run(ctx context.Context) error {
	if k.Log == nil {
		k.Log = log.L
	}
	k.vms, k.claimed = map[string]kept{}, map[string]VM{}
	if err := k.sweep(); err != nil {
		return err
	}
	k.inheritClaimed()
	poll := k.Poll
	if poll == 0 {
		poll = pollEvery
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		k.tend(ctx)
		select {
		case <-ctx.Done():
			k.stopAll(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
		}
	}
}

// tend forgets claimed VMs, retires dead and old ones and boots one VM if
// the pool holds fewer than Size and may refill now (one per call, so
// that a claim during a refill is seen before the next boot).
func (k *Keeper) tend(ctx context.Context) {
	now := time.Now()
	for id, v := range k.vms {
		if _, err := os.Stat(k.Pool.VMDir(id)); errors.Is(err, fs.ErrNotExist) {
			delete(k.vms, id)
			k.release(id, v.vm)
			k.lastClaim = now
			k.Log.WithField("vm", id).Info("cached VM claimed by a pod")
			continue
		}
		why := ""
		select {
		case <-v.vm.Done():
			why = "died"
		default:
			if k.MaxAge > 0 && now.Sub(v.booted) > k.MaxAge {
				why = "older than the cache's max age"
			}
		}
		if why != "" {
			k.Log.WithField("vm", id).Info("cached VM " + why + ": replacing it")
			k.retire(ctx, id, v)
		}
	}
	k.watchClaimed(ctx)
	if k.mayRefill(now) && ctx.Err() == nil && now.After(k.nextBoot) {
		if err := k.bootOne(ctx); err != nil {
			k.nextBoot = time.Now().Add(bootRetry)
			k.Log.WithError(err).Warnf("boot a cached VM (tried again in %s)", bootRetry)
		}
	}
}

// mayRefill says whether the pool is short and may boot now: Quiet after
// the last claim, or once it has been short for QuietMax.
func (k *Keeper) mayRefill(now time.Time) bool {
	if len(k.vms) >= k.Size {
		k.shortSince = time.Time{}
		return false
	}
	if k.shortSince.IsZero() {
		k.shortSince = now
	}
	bound := k.QuietMax
	if bound == 0 {
		bound = defaultQuietMax
	}
	return now.Sub(k.lastClaim) >= k.Quiet || now.Sub(k.shortSince) >= bound
}

// release lets a claimed VM go, and watches it if Claimed is set.
func (k *Keeper) release(id string, vm VM) {
	vm.Release()
	if k.Claimed != "" {
		k.claimed[id] = vm
	}
}

// watchClaimed stops claimed VMs that still run while no directory of a
// sandbox holds them (their shim died and its sandbox was cleaned up),
// and forgets those that ended.
func (k *Keeper) watchClaimed(ctx context.Context) {
	for id, vm := range k.claimed {
		select {
		case <-vm.Done():
			delete(k.claimed, id)
			continue
		default:
		}
		held, err := k.heldByASandbox(id)
		if err != nil || held {
			continue
		}
		delete(k.claimed, id)
		k.Log.WithField("vm", id).Warn("a claimed VM runs on without its sandbox (its shim died): stopping it")
		if err := vm.Stop(ctx); err != nil {
			k.Log.WithError(err).WithField("vm", id).Warn("stop a claimed VM left without its sandbox")
		}
	}
}

// inheritClaimed watches the claimed VMs sandboxes hold now: an earlier
// keeper released them, and no keeper watched them since it ended.
func (k *Keeper) inheritClaimed() {
	if k.Claimed == "" || k.Inherit == nil {
		return
	}
	dirs, _ := filepath.Glob(k.Claimed)
	for _, d := range dirs {
		e, err := ReadEntry(d)
		if err != nil || k.claimed[e.ID] != nil {
			continue
		}
		vm, err := k.Inherit(e)
		if err != nil {
			k.Log.WithError(err).WithField("vm", e.ID).Info("not watching a claimed VM an earlier daemon booted")
			continue
		}
		k.claimed[e.ID] = vm
	}
}

// heldByASandbox says whether a directory matching Claimed holds VM id.
func (k *Keeper) heldByASandbox(id string) (bool, error) {
	dirs, err := filepath.Glob(k.Claimed)
	if err != nil {
		return false, err
	}
	for _, d := range dirs {
		if e, err := ReadEntry(d); err == nil && e.ID == id {
			return true, nil
		}
	}
	return false, nil
}

// bootOne boots a VM into a new directory of the pool and publishes it.
func (k *Keeper) bootOne(ctx context.Context) error {
	id, err := k.Pool.NewDir()
	if err != nil {
		return err
	}
	dir := k.Pool.VMDir(id)
	begin := time.Now()
	e, vm, err := k.Boot(ctx, id, dir)
	if err != nil {
		k.remove(dir)
		return err
	}
	e.ID, e.Booted = id, time.Now()
	if err := k.Pool.Publish(e); err != nil {
		vm.Stop(context.WithoutCancel(ctx))
		k.remove(dir)
		return err
	}
	k.vms[id] = kept{vm: vm, booted: e.Booted}
	k.Log.WithFields(log.Fields{"vm": id, "vcpus": e.VCPUs, "memory_mib": e.MemoryMiB, "key": e.Key,
		"took": time.Since(begin).Round(time.Millisecond)}).Info("cached VM ready")
	return nil
}

// retire takes VM id back from the pool and stops it, unless a pod
// claimed it first (then it is released).
func (k *Keeper) retire(ctx context.Context, id string, v kept) {
	delete(k.vms, id)
	dir, ok, err := k.Pool.retire(id)
	if err != nil {
		k.Log.WithError(err).WithField("vm", id).Warn("retire a cached VM")
		return
	}
	if !ok {
		k.release(id, v.vm)
		return
	}
	if err := v.vm.Stop(ctx); err != nil {
		k.Log.WithError(err).WithField("vm", id).Warn("stop a retired cached VM")
	}
	if err := k.remove(dir); err != nil {
		k.Log.WithError(err).WithField("vm", id).Warn("remove a retired cached VM")
	}
}

func (k *Keeper) remove(dir string) error {
	if k.Remove != nil {
		return k.Remove(dir)
	}
	return os.RemoveAll(dir)
}

// stopAll retires every VM still the keeper's.
func (k *Keeper) stopAll(ctx context.Context) {
	for id, v := range k.vms {
		k.retire(ctx, id, v)
	}
}

// sweep ends what an earlier keeper left: every directory in the pool
// (ready VMs, interrupted boots) is retired, and every retired directory
// is handed to Leftover and removed.
func (k *Keeper) sweep() error {
	ents, err := os.ReadDir(k.Pool.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("VM cache: sweep: %w", err)
	}
	for _, d := range ents {
		if d.IsDir() && d.Name() != retiredName {
			if _, _, err := k.Pool.retire(d.Name()); err != nil {
				return err
			}
		}
	}
	area := filepath.Join(k.Pool.Dir, retiredName)
	left, err := os.ReadDir(area)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("VM cache: sweep: %w", err)
	}
	for _, d := range left {
		dir := filepath.Join(area, d.Name())
		e, err := ReadEntry(dir)
		if k.Leftover != nil {
			k.Leftover(dir, e, err == nil)
		}
		if err := k.remove(dir); err != nil {
			return fmt.Errorf("VM cache: sweep: %w", err)
		}
		k.Log.WithField("vm", d.Name()).Info("removed a cached VM an earlier keeper left")
	}
	return nil
}
