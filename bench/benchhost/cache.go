package benchhost

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/factory/cache"
)

// cacheFillTimeout bounds the wait for a full pool: the daemon boots one
// VM after another, about a second each under TCG here.
const cacheFillTimeout = 5 * time.Minute

// cacheStopTimeout bounds the daemon's end after SIGTERM (it stops the
// VMs of its pool).
const cacheStopTimeout = time.Minute

// cacheDaemon is the cache mode's `podvm factory serve`, run by the bench
// host as a node runs it beside containerd.
type cacheDaemon struct {
	cmd    *exec.Cmd
	log    string
	size   int
	pool   cache.Pool
	exited chan struct{}
	// ownNetNS: the daemon's holding network namespace did not exist
	// before it, so the host removes it at the end.
	ownNetNS bool
}

// holdNetNSPath is the daemon's holding network namespace.
var holdNetNSPath = filepath.Join("/run/netns", cache.HoldNetNS)

// startCacheDaemon starts `podvm factory serve` of the install for the
// cache mode's handler, if it is measured, and waits until its pool is
// full.
func (h *Host) startCacheDaemon(ctx context.Context) error {
	cfgPath, ok := h.PodvmConfigs[PodvmHandler(config.FactoryCache)]
	if !ok {
		return nil
	}
	d := &cacheDaemon{log: filepath.Join(h.Dir, "factory-serve.log"), size: h.opts.CacheSize,
		pool: cache.Pool{Dir: cache.PoolDir(StateDir)}, exited: make(chan struct{})}
	if _, err := os.Stat(holdNetNSPath); os.IsNotExist(err) {
		d.ownNetNS = true
	}
	logf, err := os.Create(d.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.cmd = exec.Command(filepath.Join(h.Tools.Prefix, "bin", "podvm"), "factory", "serve", "--config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("podvm factory serve: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	h.cacheD = d
	begin := time.Now()
	if err := d.waitFull(ctx); err != nil {
		return err
	}
	h.step("VM cache: podvm factory serve (pid %d, log %s) filled its pool of %d in %s",
		d.cmd.Process.Pid, d.log, d.size, time.Since(begin).Round(time.Millisecond))
	return nil
}

// waitFull waits until the pool holds size ready VMs.
func (d *cacheDaemon) waitFull(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, cacheFillTimeout)
	defer cancel()
	for {
		ready, _, err := d.pool.Ready()
		if err == nil && len(ready) >= d.size {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("podvm factory serve ended: %s (log %s)", d.cmd.ProcessState, d.log)
		case <-ctx.Done():
			return fmt.Errorf("VM cache: %d of %d VMs ready: %w (log %s)", len(ready), d.size, ctx.Err(), d.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitCacheRefilled waits, after a pod or container of handler went (a
// no-op unless handler is the cache mode's), until the pool is full again: each measurement then starts as on a node whose
// cache had time to refill, and no refill's boots run in the next
// measurement's time.
func (h *Host) WaitCacheRefilled(ctx context.Context, handler string) error {
	if h.cacheD == nil || FactoryMode(handler) != config.FactoryCache {
		return nil
	}
	return h.cacheD.waitFull(ctx)
}

// stopCacheDaemon ends the daemon as its service would (SIGTERM: it stops
// the VMs no pod took) and returns what it left: VMs in its pool.
func (h *Host) stopCacheDaemon() (leaks []string) {
	d := h.cacheD
	if d == nil {
		return nil
	}
	h.cacheD = nil
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(cacheStopTimeout):
		d.cmd.Process.Kill()
		<-d.exited
		leaks = append(leaks, fmt.Sprintf("podvm factory serve did not end within %s of SIGTERM (log %s)", cacheStopTimeout, d.log))
	}
	if st := d.cmd.ProcessState; st != nil && !st.Success() && len(leaks) == 0 {
		leaks = append(leaks, fmt.Sprintf("podvm factory serve ended with %s (log %s)", st, d.log))
	}
	if log, err := os.ReadFile(h.LogPath()); err == nil {
		h.step("VM cache: %d pods took a VM from the cache, %d booted their own",
			strings.Count(string(log), msgCacheTaken), strings.Count(string(log), msgCacheNotTaken))
	}
	leaks = append(leaks, poolLeftovers(d.pool.Dir)...)
	if d.ownNetNS && len(leaks) == 0 {
		if out, err := exec.Command("ip", "netns", "delete", cache.HoldNetNS).CombinedOutput(); err != nil {
			leaks = append(leaks, fmt.Sprintf("VM cache: ip netns delete %s: %v: %s", cache.HoldNetNS, err, out))
		}
	}
	return leaks
}

// Log messages of the shim's cache path (runtime/sandbox), and as they
// stand in a logfmt line.
const (
	msgCacheTakenMsg    = "pod VM taken from the VM cache"
	msgCacheNotTakenMsg = "pod VM not taken from the VM cache: booting it"
	msgCacheTaken       = `msg="` + msgCacheTakenMsg + `"`
	msgCacheNotTaken    = `msg="` + msgCacheNotTakenMsg + `"`
)

// poolLeftovers lists what a stopped daemon left in its pool (an empty
// retired area is not a leftover), and removes the pool if it is empty.
func poolLeftovers(dir string) []string {
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		sub, _ := os.ReadDir(filepath.Join(dir, e.Name()))
		if e.Name() == "retired" && len(sub) == 0 {
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		left = append(left, e.Name())
	}
	if len(left) > 0 {
		return []string{fmt.Sprintf("VM cache: %s still holds %s", dir, strings.Join(left, ", "))}
	}
	os.Remove(dir)
	return nil
}
