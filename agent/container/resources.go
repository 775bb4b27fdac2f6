package container

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	if c.native != nil {
		if err := c.native.update(&r); err != nil {
			return fmt.Errorf("update container %s: %w", c.id, err)
		}
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	err := c.cpu.update(ctx, func() error { return c.runc.Update(ctx, c.id, &r) })
	if err != nil {
		return runcError(fmt.Errorf("update container %s: %w", c.id, err), c.logPath())
	}
	return nil
}
