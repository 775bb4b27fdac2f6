package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/factory/cache"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// takeCachedVM takes a VM the cache's daemon booted ahead (docs/factory.md
// sections 8 and 9): it claims one of the pod's key and size by renaming
// its directory into the sandbox's state dir, then attaches the pod to it:
// its processes (pidfds, the jail uid's lock), the pod's host cgroup, its
// tap moved into the pod's network namespace, and its share, which
// becomes the sandbox's. The agent connection starts as soon as the VMM
// is in the pod's cgroup and runs while the rest moves. Before the claim
// an error leaves the sandbox as it was (the caller boots a VM); after it
// s.vm is set and the error is the sandbox's (Destroy stops the VM).
func (s *Sandbox) takeCachedVM(ctx context.Context, driver hypervisor.Driver, cfg hypervisor.Config, guestOCIRuntime string) error {
	if s.net != nil && len(cfg.Net) != 1 {
		return fmt.Errorf("the pod has %d network interfaces; a cached VM has one NIC", len(cfg.Net))
	}
	key, err := cache.Key(driver.Name(), cfg, guestOCIRuntime)
	if err != nil {
		return err
	}
	begin := time.Now()
	pool := cache.Pool{Dir: cache.PoolDir(filepath.Dir(filepath.Dir(s.StateDir)))}
	dir := filepath.Join(s.StateDir, cache.ClaimedName)
	e, err := pool.Claim(cache.Want{Key: key, VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB}, dir)
	if err != nil {
		return err
	}
	vm, err := cache.Adopt(dir, e)
	if err != nil {
		return fmt.Errorf("%w (the claimed VM is stopped with the sandbox)", err)
	}
	s.vm = vm
	if err := s.attachCachedVM(ctx, e); err != nil {
		return err
	}
	s.share = share.At(dir)
	s.Timings.VMMStarted = time.Now()
	log.G(ctx).WithFields(log.Fields{
		"sandbox": s.ID, "cached_vm": e.ID, "vcpus": e.VCPUs, "memory_mib": e.MemoryMiB, "jail_uid_lock": vm.JailLock(),
		"cached_for": begin.Sub(e.Booted).Round(time.Millisecond), "took": time.Since(begin).Round(time.Millisecond),
	}).Info("pod VM taken from the VM cache")
	return crash.NotePids(s.StateDir, e.Pids)
}

// attachCachedVM moves a claimed VM's VMM out of the pool's idle CPU
// priority into the pod's host cgroup, starts the agent connection (the
// agent answers over virtio-serial, which needs no tap), then moves the
// helpers and the tap into the pod's network namespace.
func (s *Sandbox) attachCachedVM(ctx context.Context, e cache.Entry) (err error) {
	if err := s.moveCachedVM(e, e.Pids[:1]); err != nil {
		return err
	}
	s.early = connectEarly(ctx, s.vm)
	defer func() {
		if err != nil {
			s.early.drop()
			s.early = nil
		}
	}()
	if err := s.moveCachedVM(e, e.Pids[1:]); err != nil {
		return err
	}
	if s.net == nil {
		return nil
	}
	nsPath := s.net.NSPath()
	if err := s.net.Teardown(); err != nil { // the taps prepareHost made for a booted VM
		return fmt.Errorf("pod network of sandbox %s: %w", s.ID, err)
	}
	s.net = nil
	nw, err := network.Adopt(nsPath, e.HoldNS, e.Tap)
	if err != nil {
		return fmt.Errorf("pod network of sandbox %s on cached VM %s: %w", s.ID, e.ID, err)
	}
	s.net = nw
	return nil
}

// moveCachedVM moves processes pids of claimed VM e out of the pool's cgroup,
// where they ran at idle CPU priority, into the pod's host cgroup, or the
// root cgroup for a pod without one.
func (s *Sandbox) moveCachedVM(e cache.Entry, pids []int) error {
	cg := s.cgroup
	if cg == nil {
		root, err := hostcgroup.Root()
		if err != nil {
			return fmt.Errorf("move cached VM %s out of the pool's cgroup: %w", e.ID, err)
		}
		cg = root
	}
	for _, pid := range pids {
		if err := cg.Add(pid); err != nil {
			return fmt.Errorf("move cached VM %s into host cgroup %s: %w", e.ID, cg.Path(), err)
		}
	}
	return nil
}

// earlyAgentWait bounds the connection a claim starts: the cached VM's
// agent answered its daemon already. If it fails, initGuest connects as
// for a booted VM, within runtime.agent_timeout.
const earlyAgentWait = 10 * time.Second

// earlyAgent is an agent connection being made while a claimed VM is
// attached to its pod. It is this sandbox's own: made after the claim's
// rename, through the claimed directory's socket and with its secret, as
// the connection after the attachment was.
type earlyAgent struct {
	done   chan struct{}
	client *agentclient.Client
	err    error
}

func connectEarly(ctx context.Context, vm hypervisor.VM) *earlyAgent {
	a := &earlyAgent{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.client, a.err = agentclient.Connect(ctx, vm.DialAgent, earlyAgentWait, vm.Done())
	}()
	return a
}

// drop closes the connection once made: the sandbox failed before using it.
func (a *earlyAgent) drop() {
	go func() {
		<-a.done
		if a.client != nil {
			a.client.Close()
		}
	}()
}

// connectAgent connects to the VM's agent, or takes the connection a
// claim started (logged and made again if it failed).
func (s *Sandbox) connectAgent(ctx context.Context, timeout time.Duration) (*agentclient.Client, error) {
	if a := s.early; a != nil {
		s.early = nil
		<-a.done
		if a.err == nil {
			return a.client, nil
		}
		log.G(ctx).WithError(a.err).WithField("sandbox", s.ID).Warn("agent connection during the cached VM's adoption failed: connecting again")
	}
	return agentclient.Connect(ctx, s.vm.DialAgent, timeout, s.vm.Done())
}
