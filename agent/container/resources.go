package container

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/cgroup"
)

// Pids returns the guest pids of every process in the container's cgroup.
func (c *Container) Pids() ([]int, error) {
	if err := c.checkCgroup("list processes of"); err != nil {
		return nil, err
	}
	return c.cgroup.Procs()
}

// Stats returns the container's cgroup v2 metrics.
func (c *Container) Stats() (*stats.Metrics, error) {
	if err := c.checkCgroup("stats of"); err != nil {
		return nil, err
	}
	st, err := c.cgroup.Stat()
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.id, err)
	}
	return st, nil
}

func (c *Container) checkCgroup(what string) error {
	c.mu.Lock()
	removed := c.removed
	c.mu.Unlock()
	if removed {
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	}
	if !c.cgroup.Known() {
		return fmt.Errorf("%s container %s: its cgroup is unknown: %w", what, c.id, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Update applies OCI LinuxResources (JSON) to a created or running
// container with `runc update`, which writes the cgroup and runc's state.
func (c *Container) Update(ctx context.Context, resources []byte) error {
	var r specs.LinuxResources
	if err := json.Unmarshal(resources, &r); err != nil {
		return fmt.Errorf("update container %s: decode resources: %v: %w", c.id, err, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.removed:
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	case c.init.exited():
		return fmt.Errorf("update container %s: the container is stopped: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := c.runc.Update(context.WithoutCancel(ctx), c.id, &r); err != nil {
		return runcError(fmt.Errorf("update container %s: %w", c.id, err), c.logPath())
	}
	return nil
}

// outsideCPUQuota runs start, which starts the OCI runtime for a new
// process of a container (runc create or runc exec), so that the runtime's
// own setup is not throttled by the container's CPU limit. runc puts its
// init into the container's cgroup before the init sets up the process,
// and under TCG that setup costs tens of times its native CPU time:
// charged to a 10 millicore quota (cpu.max 1000 100000), one exec took
// over a minute. start runs on a thread under SCHED_RR, which the runtime
// and its init inherit and which CFS bandwidth control does not throttle
// (where the kernel has no RT group scheduling, as in the guest); the init
// returns to SCHED_OTHER before it executes the user's process
// (resetScheduler), so the process runs under its limit from its first
// instruction. The runtime's CPU time is still counted in the cgroup's
// cpu.stat. Where the policy cannot be set, or the runtime is not runc,
// start runs as before (realtimeStart).
func outsideCPUQuota(runtimeCommand string, start func() error) error {
	if !realtimeStart(runtimeCommand) {
		return start()
	}
	// The policy is per thread and inherited by what the thread forks; a
	// locked thread has the Go runtime start its new threads elsewhere.
	runtime.LockOSThread()
	if setScheduler(unix.SCHED_RR, 1) != nil {
		runtime.UnlockOSThread()
		return start()
	}
	err := start()
	// A thread left real-time must run nothing else: kept locked, it
	// ends with this goroutine.
	if setScheduler(unix.SCHED_NORMAL, 0) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// realtimeStart says whether outsideCPUQuota starts runtimeCommand under
// a real-time policy: only runc, which applies process.scheduler (1.2 and
// later; crun 1.8 ignores it, and its processes would stay real-time), and
// only where the kernel lets a real-time task into a container's cgroup.
func realtimeStart(runtimeCommand string) bool {
	return filepath.Base(runtimeCommand) == "runc" && realtimeUngrouped()
}

var realtimeUngrouped = sync.OnceValue(func() bool { return !cgroup.RealtimeGrouped() })

func setScheduler(policy uint32, priority uint32) error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Priority: priority}, 0)
}

// resetScheduler makes the OCI runtime's init set the process's scheduling
// policy back to SCHED_OTHER (nice 0, what the agent runs with) before it
// executes it, unless the process asks for a policy of its own, wherever
// outsideCPUQuota may start the runtime under a real-time policy. (For a
// runtime started as before, the init is under SCHED_OTHER already.)
func resetScheduler(p *specs.Process) {
	if p != nil && p.Scheduler == nil && realtimeUngrouped() {
		p.Scheduler = &specs.Scheduler{Policy: specs.SchedOther}
	}
}
