package container

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/cgroup"
)

// setupShare: the OCI runtime sets up a container's process with at least
// 1/setupShare of a CPU, whatever the container's own limit.
const setupShare = 2

// cpuFloor keeps the OCI runtime's setup of a container's processes out of
// a CPU limit too small for it. runc (and crun) put a new process into the
// container's cgroup before they set it up (namespaces, mounts,
// capabilities, seccomp; for runc a Go runtime start), and under TCG that
// setup costs tens of times its native CPU time: charged to 10 millicores
// it took 14.5 s to create a container and over a minute to exec. So:
//
//   - create: the bundle asks for the floor (raiseInSpec); once the runtime
//     has created the container, its init set up and waiting to be started,
//     the container's own limit is applied through the runtime (settle),
//     before any of the user's code runs;
//   - exec: the container's cpu.max is raised to the floor while the runtime
//     sets the process up (lend) and set back to the container's latest
//     limit when the runtime returns, whatever an update did meanwhile
//     (update).
//
// Containers without a CPU limit, or with one of at least the floor, are
// left alone. docs/design.md "Small CPU limits" has the figures.
type cpuFloor struct {
	mu sync.Mutex
	// cg is the container's cgroup v2; zero (unknown, or cgroup v1): no
	// floor is lent on exec.
	cg cgroup.Cgroup
	// own are the container's own resources, when the bundle asked for
	// the floor instead, until settle applies them.
	own *specs.LinuxResources
	// limit is the container's own cpu.max, as last applied.
	limit cgroup.CPUMax
	lends int // execs under way with the floor lent
}

// setupFloor returns the CPU limit the runtime sets a process up under in
// a container limited to m, and whether it is above m.
func setupFloor(m cgroup.CPUMax) (cgroup.CPUMax, bool) {
	floor := int64(m.Period / setupShare)
	if !m.Limited() || m.Quota >= floor {
		return m, false
	}
	return cgroup.CPUMax{Quota: floor, Period: m.Period}, true
}

// specCPUMax is what cpu.max reads for the spec's resources.
func specCPUMax(r *specs.LinuxResources) cgroup.CPUMax {
	m := cgroup.CPUMax{Quota: -1, Period: cgroup.DefaultCPUPeriod}
	if r == nil || r.CPU == nil {
		return m
	}
	if p := r.CPU.Period; p != nil && *p != 0 {
		m.Period = *p
	}
	if q := r.CPU.Quota; q != nil && *q > 0 {
		m.Quota = *q
	}
	return m
}

// raiseInSpec makes spec ask for the floor where its CPU limit is below it,
// and keeps the spec's own resources for settle. Only on cgroup v2, which
// the guest runs.
func (f *cpuFloor) raiseInSpec(spec *specs.Spec, unified bool) {
	r := spec.Linux.Resources
	f.limit = specCPUMax(r)
	floor, raise := setupFloor(f.limit)
	if !raise || !unified {
		return
	}
	// What settle applies is what a CRI update carries: no device rules,
	// which runc's update skips and crun's would load again.
	own := *r
	own.Devices = nil
	f.own = &own
	raised, cpu := *r, *r.CPU
	cpu.Quota = &floor.Quota
	raised.CPU = &cpu
	spec.Linux.Resources = &raised
}

// settle records the container's cgroup and, if the bundle asked for the
// floor, applies the container's own resources with update (the runtime's
// update, so that its record of the limits is the container's own too).
// An error leaves the container above its limit: it must not be started.
func (f *cpuFloor) settle(cg cgroup.Cgroup, update func(*specs.LinuxResources) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cg.V2 {
		f.cg = cg
	}
	if f.own == nil {
		return nil
	}
	if err := update(f.own); err != nil {
		return fmt.Errorf("apply the CPU limit %s after setup: %w", f.limit, err)
	}
	f.own = nil
	return nil
}

// lend raises the container's cpu.max to the floor, where its limit is
// below it, until the returned function is called. Execs may overlap: the
// limit comes back when the last one returns.
func (f *cpuFloor) lend(ctx context.Context) (giveBack func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	floor, raise := setupFloor(f.limit)
	if !raise || !f.cg.Known() {
		return func() {}
	}
	if f.lends == 0 {
		if err := f.cg.SetCPUMax(floor); err != nil {
			log.G(ctx).WithError(err).Warn("exec runs its setup under the container's own CPU limit")
			return func() {}
		}
	}
	f.lends++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lends--
		if f.lends > 0 {
			return
		}
		if err := f.cg.SetCPUMax(f.limit); err != nil {
			log.G(ctx).WithError(err).Errorf("container's CPU limit %s not restored after exec", f.limit)
		}
	}
}

// update runs apply, which sets the container's resources through the
// runtime, and then takes the limit it wrote as the container's own: the
// one an exec under way gives back. While an exec is under way the floor
// stays lent.
func (f *cpuFloor) update(ctx context.Context, apply func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := apply(); err != nil {
		return err
	}
	if !f.cg.Known() {
		return nil
	}
	// The update is done; only what an exec gives back is at stake.
	m, err := f.cg.CPUMax()
	if err != nil {
		log.G(ctx).WithError(err).Warnf("exec may give back the CPU limit %s from before the update", f.limit)
		return nil
	}
	f.limit = m
	if floor, raise := setupFloor(m); raise && f.lends > 0 {
		if err := f.cg.SetCPUMax(floor); err != nil {
			log.G(ctx).WithError(err).Warn("the rest of an exec's setup runs under the container's new CPU limit")
		}
	}
	return nil
}
