package container

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
)

// Exit is how a process ended.
type Exit struct {
	// Status is the exit code, or 128+signal if a signal killed it, as
	// containerd reports it.
	Status int
	At     time.Time
}

// Process is a container's process with its stdio and, once it ended, its
// exit.
type Process struct {
	c     *Container
	pid   int
	stdio *stdio

	done chan struct{} // closed once exit is set
	once sync.Once
	exit Exit
}

func newProcess(c *Container, pid int, s *stdio) *Process {
	return &Process{c: c, pid: pid, stdio: s, done: make(chan struct{})}
}

// Pid returns the process's pid in the guest's root pid namespace.
func (p *Process) Pid() int { return p.pid }

func (p *Process) setExited(e runc.Exit) {
	p.once.Do(func() {
		p.exit = Exit{Status: e.Status, At: e.Timestamp}
		close(p.done)
	})
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the process has exited, or ctx ends. Any number of
// callers may wait, before or after the exit.
func (p *Process) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.done:
		return p.exit, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Signal sends sig to the process with runc kill; with all, to every
// process of the container.
//
// runc 1.2 and later treat `kill --all` as obsolete: the signal goes to the
// init only (SIGKILL to a private pid namespace's init kills the rest
// anyway). For any other signal the agent signals the container's other
// processes itself, from the cgroup's list that `runc ps` reads.
func (p *Process) Signal(ctx context.Context, sig syscall.Signal, all bool) error {
	ctx = context.WithoutCancel(ctx)
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	}
	if p.exited() {
		return fmt.Errorf("process %d of container %s already finished: %w", p.pid, c.id, errdefs.ErrNotFound)
	}
	if all && sig != syscall.SIGKILL {
		if err := p.signalOthers(ctx, sig); err != nil {
			return err
		}
	}
	err := c.runc.Kill(ctx, c.id, int(sig), &runc.KillOpts{All: all})
	if err == nil {
		return nil
	}
	// runc refuses a container whose init just died; the reaper's news
	// of that exit may be a moment behind.
	select {
	case <-p.done:
		return fmt.Errorf("process %d of container %s already finished: %w", p.pid, c.id, errdefs.ErrNotFound)
	case <-time.After(100 * time.Millisecond):
	}
	return runcError(fmt.Errorf("signal %d to container %s: %w", sig, c.id, err), c.logPath())
}

// signalOthers signals every process in the container's cgroup but the init.
// A process that exits meanwhile is no error.
func (p *Process) signalOthers(ctx context.Context, sig syscall.Signal) error {
	pids, err := p.c.runc.Ps(ctx, p.c.id)
	if err != nil {
		return runcError(fmt.Errorf("list processes of container %s: %w", p.c.id, err), p.c.logPath())
	}
	for _, pid := range pids {
		if pid == p.pid {
			continue
		}
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %d to pid %d of container %s: %w", sig, pid, p.c.id, err)
		}
	}
	return nil
}

// ReadStdout returns up to n bytes of stdout; eof once it is drained.
func (p *Process) ReadStdout(ctx context.Context, n int) ([]byte, bool, error) {
	return p.stdio.stdout.read(ctx, n)
}

// ReadStderr returns up to n bytes of stderr; eof once it is drained.
func (p *Process) ReadStderr(ctx context.Context, n int) ([]byte, bool, error) {
	return p.stdio.stderr.read(ctx, n)
}

// WriteStdin writes data to the process's stdin.
func (p *Process) WriteStdin(ctx context.Context, data []byte) (int, error) {
	n, err := p.stdio.stdin.write(ctx, data)
	if err != nil {
		return n, fmt.Errorf("write stdin of container %s: %w", p.c.id, err)
	}
	return n, nil
}

// CloseStdin closes the process's stdin, so it reads EOF.
func (p *Process) CloseStdin() error {
	if err := p.stdio.stdin.close(); err != nil {
		return fmt.Errorf("close stdin of container %s: %w", p.c.id, err)
	}
	return nil
}
