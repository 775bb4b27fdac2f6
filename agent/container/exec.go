package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api/contract"
)

// ExecRequest is what ExecProcess asks for.
type ExecRequest struct {
	ID string
	// Process is the OCI Process (JSON) to run.
	Process []byte
	Stdio
}

// Exec starts an additional process in a created or running container
// (`runc exec --detach`). Its stdio and exit are then kept like the init's,
// under r.ID, until the container is removed.
func (c *Container) Exec(ctx context.Context, r ExecRequest) error {
	begin := MarkNow(contract.MarkExecBegin)
	if !validID(r.ID) {
		return fmt.Errorf("exec id %q in container %s: want 1-128 of [A-Za-z0-9_.+-], not starting with a symbol: %w", r.ID, c.id, errdefs.ErrInvalidArgument)
	}
	var proc specs.Process
	if err := json.Unmarshal(r.Process, &proc); err != nil {
		return fmt.Errorf("exec %s in container %s: decode process: %v: %w", r.ID, c.id, err, errdefs.ErrInvalidArgument)
	}
	if len(proc.Args) == 0 && proc.CommandLine == "" {
		return fmt.Errorf("exec %s in container %s: the process has no args: %w", r.ID, c.id, errdefs.ErrInvalidArgument)
	}
	// As for the init: runc and the agent must agree on the console socket.
	proc.Terminal = r.Terminal

	// Shared: execs of a container run side by side, so one whose runtime
	// is slow (its runc init starved of CPU by a small CPU limit) holds up
	// no other exec and no signal; start, update and remove wait for it.
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.removed:
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	case c.init.exited():
		return fmt.Errorf("exec %s in container %s: the container is stopped: %w", r.ID, c.id, errdefs.ErrFailedPrecondition)
	case c.native != nil:
		return fmt.Errorf("exec %s in container %s: %w", r.ID, c.id, errNativeExec)
	}
	if !c.reserveExec(r.ID) {
		return fmt.Errorf("exec %s in container %s: %w", r.ID, c.id, errdefs.ErrAlreadyExists)
	}

	m := c.m
	m.mu.Lock()
	m.spawns++
	m.mu.Unlock()
	p, err := c.exec(context.WithoutCancel(ctx), r, proc)
	if err == nil {
		p.marks = []Mark{begin, MarkNow(contract.MarkExecRunning)}
	}
	c.execMu.Lock()
	delete(c.starting, r.ID)
	if err == nil {
		c.execs[r.ID] = p
	}
	c.execMu.Unlock()
	m.spawned(p)
	return err
}

// reserveExec claims execID for an exec being started; false if an exec
// of that id exists or is being started.
func (c *Container) reserveExec(execID string) bool {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	_, exists := c.execs[execID]
	_, starting := c.starting[execID]
	if exists || starting {
		return false
	}
	c.starting[execID] = struct{}{}
	return true
}

func (c *Container) exec(ctx context.Context, r ExecRequest, proc specs.Process) (*Process, error) {
	// Per-exec files, so concurrent execs of different containers and
	// runc's own error messages do not mix.
	pidFile := filepath.Join(c.bundle, "exec-"+r.ID+".pid")
	logFile := filepath.Join(c.bundle, "exec-"+r.ID+".log")
	defer os.Remove(pidFile)
	defer os.Remove(logFile)
	// The count before the process exists: a kill of it is above it.
	base, _ := c.m.oom.Check(c.id)
	begin := time.Now()
	giveBack := c.cpu.lend(ctx)
	s, pid, err := spawn(r.Stdio, pidFile, func(io runc.IO, console runc.ConsoleSocket) error {
		return c.runc.Exec(ctx, c.id, proc, &runc.ExecOpts{
			IO: io, ConsoleSocket: console, PidFile: pidFile, LogFile: logFile, Detach: true,
		})
	})
	giveBack()
	if err != nil {
		return nil, runcError(fmt.Errorf("exec %s in container %s: %w", r.ID, c.id, err), logFile)
	}
	log.G(ctx).Debugf("exec %s in container %s: %s exec took %v", r.ID, c.id, c.runtimeName, time.Since(begin))
	p := newProcess(c, r.ID, pid, s)
	p.oomBase = base
	return p, nil
}

// RemoveExec forgets an exec that has exited, freeing its id and stdio, so
// that exec-based probes do not pile records up for the container's life.
func (c *Container) RemoveExec(execID string) error {
	if execID == "" {
		return fmt.Errorf("container %s: the init is removed with the container: %w", c.id, errdefs.ErrInvalidArgument)
	}
	c.execMu.Lock()
	defer c.execMu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return fmt.Errorf("exec %s in container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	if !p.exited() {
		return fmt.Errorf("exec %s in container %s is still running: %w", execID, c.id, errdefs.ErrFailedPrecondition)
	}
	delete(c.execs, execID)
	if p.stdio != nil {
		p.stdio.close()
	}
	return nil
}
