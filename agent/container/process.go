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

	"github.com/podvm/podvm/agent/api/contract"
)

// Exit is how a process ended.
type Exit struct {
	// Status is the exit code, or 128+signal if a signal killed it, as
	// containerd reports it.
	Status int
	At     time.Time
	// OOMKilled: the process died of SIGKILL and the container's cgroup
	// counted an OOM kill during its life.
	OOMKilled bool
}

// Process is a container's process (its init, or an exec process) with its
// stdio and, once it ended, its exit.
type Process struct {
	c      *Container
	execID string // "" for the init
	pid    int
	stdio  *stdio
	// oomBase is the container's OOM-kill count when the process started.
	oomBase uint64

	done chan struct{} // closed once exit is set
	once sync.Once
	exit Exit
	// marks are the steps of the process's life (contract.Mark*): an
	// exec's start, set before the process is published, and the reap,
	// set before done closes.
	marks []Mark
}

func newProcess(c *Container, execID string, pid int, s *stdio) *Process {
	return &Process{c: c, execID: execID, pid: pid, stdio: s, done: make(chan struct{})}
}

// name says which process this is, for messages.
func (p *Process) name() string {
	if p.execID == "" {
		return "init of container " + p.c.id
	}
	return fmt.Sprintf("exec %s of container %s", p.execID, p.c.id)
}

// Pid returns the process's pid in the guest's root pid namespace.
func (p *Process) Pid() int { return p.pid }

func (p *Process) setExited(e runc.Exit, oomKilled bool) {
	p.once.Do(func() {
		p.exit = Exit{Status: e.Status, At: e.Timestamp, OOMKilled: oomKilled}
		p.marks = append(p.marks, MarkNow(contract.MarkExited))
		close(p.done)
	})
}

// Marks returns the steps of the process's life so far (contract.Mark*),
// in order; complete once Wait has returned the exit.
func (p *Process) Marks() []Mark {
	select {
	case <-p.done:
		return append([]Mark(nil), p.marks...)
	default:
		return nil
	}
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

// Signal sends sig to the process. The init is signalled with runc kill;
// with all, every process of the container is. An exec process is
// signalled directly, as containerd's runc shim does.
//
// runc 1.2 and later treat `kill --all` as obsolete: the signal goes to the
// init only (SIGKILL to a private pid namespace's init kills the rest
// anyway). For any other signal the agent signals the container's other
// processes itself, from the cgroup's list that `runc ps` reads.
func (p *Process) Signal(ctx context.Context, sig syscall.Signal, all bool) error {
	ctx = context.WithoutCancel(ctx)
	c := p.c
	// Shared with exec, so a slow exec delays no kill.
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.removed {
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	}
	if p.exited() {
		return fmt.Errorf("%s (pid %d) already finished: %w", p.name(), p.pid, errdefs.ErrNotFound)
	}
	if p.execID != "" {
		// The pid cannot be reused before the agent reaps it.
		if err := syscall.Kill(p.pid, sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("%s (pid %d) already finished: %w", p.name(), p.pid, errdefs.ErrNotFound)
			}
			return fmt.Errorf("signal %d to %s: %w", sig, p.name(), err)
		}
		return nil
	}
	if c.native != nil {
		return c.native.signal(c, sig, all)
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
		if all && sig != syscall.SIGKILL {
			// signalOthers reached the other processes, and the init
			// ended meanwhile (typically because of it: a shell waiting
			// for the child just signalled). Every process there was got
			// the signal, so the call did what it was asked.
			return nil
		}
		return fmt.Errorf("%s (pid %d) already finished: %w", p.name(), p.pid, errdefs.ErrNotFound)
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
		return n, fmt.Errorf("write stdin of %s: %w", p.name(), err)
	}
	return n, nil
}

// CloseStdin closes the process's stdin, so it reads EOF.
func (p *Process) CloseStdin() error {
	if err := p.stdio.stdin.close(); err != nil {
		return fmt.Errorf("close stdin of %s: %w", p.name(), err)
	}
	return nil
}

// ResizeTTY sets the window size of the process's terminal.
func (p *Process) ResizeTTY(width, height uint16) error {
	if p.stdio.tty == nil {
		return fmt.Errorf("resize terminal of %s: it has no terminal: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if p.exited() {
		return fmt.Errorf("resize terminal of %s: the process has exited: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if err := p.stdio.tty.resize(width, height); err != nil {
		return fmt.Errorf("resize terminal of %s: %w", p.name(), err)
	}
	return nil
}
