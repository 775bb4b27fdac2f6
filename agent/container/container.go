package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/cgroup"
)

// State is where a container is in its lifecycle.
type State string

const (
	Created State = "created" // runc create done; init waits for start
	Running State = "running" // runc start done; init not yet exited
	Stopped State = "stopped" // init exited; runc state and bundle remain
	Removed State = "removed" // runc delete done; the agent forgot it
)

// exitTimeout bounds the wait for the processes runc delete killed.
const exitTimeout = 10 * time.Second

// Container is one runc container and its processes.
type Container struct {
	m      *Manager
	id     string
	bundle string
	runc   *runc.Runc
	// runtimeName is the OCI runtime's name (contract.OCIRuntime*).
	runtimeName string
	init        *Process
	cgroup      cgroup.Cgroup // zero if it could not be found
	cpu         cpuFloor      // the CPU the runtime's setup gets (cpufloor.go)
	// poststartHooks: the spec has hooks for start to run (release.go).
	poststartHooks bool
	marks          []Mark // create's and start's steps; guarded by mu after create
	// native is set when the agent created the container itself, not the
	// OCI runtime (native.go): then runc is not used.
	native *nativePause

	// mu serialises the lifecycle calls, so that none acts on a container
	// another is removing: start, update and remove hold it alone, exec
	// and signal share it (they may run side by side).
	mu      sync.RWMutex
	started bool
	removed bool

	// execMu guards execs and starting. It is separate from mu because
	// exits, which must never wait behind a runc call, look processes up.
	execMu   sync.Mutex
	execs    map[string]*Process
	starting map[string]struct{} // exec ids whose runtime exec runs
}

func newContainer(m *Manager, id, bundle string, rt ociRuntime) *Container {
	return &Container{
		m:           m,
		execs:       make(map[string]*Process),
		starting:    make(map[string]struct{}),
		id:          id,
		bundle:      bundle,
		runtimeName: rt.name,
		runc: &runc.Runc{
			Command:   rt.binary,
			Root:      m.cfg.StateDir,
			Log:       filepath.Join(bundle, "log.json"),
			LogFormat: runc.JSON,
		},
	}
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// Pid returns the init's pid in the guest's root pid namespace.
func (c *Container) Pid() int { return c.init.pid }

func (c *Container) logPath() string { return c.runc.Log }

// State returns the container's lifecycle state.
func (c *Container) State() State {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.removed:
		return Removed
	case c.init.exited():
		return Stopped
	case c.started:
		return Running
	}
	return Created
}

// Process returns the init process for an empty execID, else the exec
// process of that ID.
func (c *Container) Process(execID string) (*Process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.execMu.Lock()
	defer c.execMu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %s of container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// execList returns the container's exec processes.
func (c *Container) execList() []*Process {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	ps := make([]*Process, 0, len(c.execs))
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}

// Start runs the user's process in a created container.
func (c *Container) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.removed:
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	case c.started:
		return fmt.Errorf("container %s is already started: %w", c.id, errdefs.ErrFailedPrecondition)
	case c.init.exited():
		return fmt.Errorf("container %s exited before it was started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	begin := MarkNow(contract.MarkStartBegin)
	if err := c.release(context.WithoutCancel(ctx)); err != nil {
		return runcError(fmt.Errorf("start container %s: %w", c.id, err), c.logPath())
	}
	c.marks = append(c.marks, begin, MarkNow(contract.MarkStartEnd))
	c.started = true
	return nil
}

// Marks returns when the agent reached each step of the container's create
// and start (contract.Mark*), in order.
func (c *Container) Marks() []Mark {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]Mark(nil), c.marks...)
}

// remove runs runc delete and removes the bundle. A running container is
// refused unless force, which kills it first (DestroySandbox).
func (c *Container) remove(ctx context.Context, force bool) error {
	ctx = context.WithoutCancel(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	}
	if c.started && !c.init.exited() && !force {
		return fmt.Errorf("container %s is running; signal it and wait for it before removing: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if c.native != nil {
		if err := c.native.destroy(c); err != nil {
			return err
		}
	} else if err := c.runc.Delete(ctx, c.id, &runc.DeleteOpts{Force: true}); err != nil {
		// --force also kills an init that is still there: a created
		// one, or a running one on DestroySandbox.
		return runcError(fmt.Errorf("delete container %s: %w", c.id, err), c.logPath())
	}
	// runc killed everything; wait for the exits, so that no waiter of
	// any of the container's processes is left hanging.
	deadline := time.After(exitTimeout)
	for _, p := range append(c.execList(), c.init) {
		select {
		case <-p.done:
		case <-deadline:
			return fmt.Errorf("delete container %s: %s (pid %d) still not reaped after %v", c.id, p.name(), p.pid, exitTimeout)
		}
	}
	for _, p := range append(c.execList(), c.init) {
		p.stdio.close()
	}
	if err := os.RemoveAll(c.bundle); err != nil {
		return fmt.Errorf("remove bundle of container %s: %w", c.id, err)
	}
	c.removed = true
	return nil
}
