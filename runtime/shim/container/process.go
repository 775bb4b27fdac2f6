package container

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"

	"github.com/podvm/podvm/runtime/stdio"
)

// ExitStatusUnknown is recorded for a process that ended without an exit
// code of its own: its VM died under it, or it was deleted or failed
// before it ran. It reads like a process killed by a signal.
const ExitStatusUnknown = 255

// Process is one guest process (a container's init or an exec) as the
// shim tracks it.
//
//	created --Start--> running --exit--> stopped --Delete--> (removed)
//	created --------------exit or VM death--> stopped
//
// Exit is recorded exactly once, whichever comes first: the agent's
// WaitProcess answer or the VM's death (ExitStatusUnknown).
type Process struct {
	containerID string
	execID      string
	guestPid    uint32
	streams     stdio.Streams
	execSpec    []byte // OCI Process JSON of an exec

	// started marks the host's steps of an exec's start (StartExec).
	started ExecStart

	mu         sync.Mutex
	relay      *stdio.Relay
	status     task.Status
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{}
}

func newProcess(containerID, execID string, streams stdio.Streams) *Process {
	return &Process{containerID: containerID, execID: execID, streams: streams, status: task.Status_CREATED, exited: make(chan struct{})}
}

// ContainerID names the process's container.
func (p *Process) ContainerID() string { return p.containerID }

// ExecID names an exec; it is empty for the container's init.
func (p *Process) ExecID() string { return p.execID }

// GuestPid is the init's pid in the guest (zero for an exec).
func (p *Process) GuestPid() uint32 { return p.guestPid }

// Streams are the host fifos containerd gave the process.
func (p *Process) Streams() stdio.Streams { return p.streams }

// State reports the status and, once stopped, the exit status and time.
func (p *Process) State() (task.Status, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exitStatus, p.exitedAt
}

// SetRunning moves a created process to running; it reports false in any
// other state.
func (p *Process) SetRunning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != task.Status_CREATED {
		return false
	}
	p.status = task.Status_RUNNING
	return true
}

// SetExited records the exit; it reports false if one was already recorded.
func (p *Process) SetExited(status uint32, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return false
	}
	p.status = task.Status_STOPPED
	p.exitStatus = status
	p.exitedAt = at
	close(p.exited)
	return true
}

// Wait returns once the exit is recorded, or with ctx's error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Process) setRelay(r *stdio.Relay) {
	p.mu.Lock()
	p.relay = r
	p.mu.Unlock()
}

func (p *Process) stdio() *stdio.Relay {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.relay
}

// WaitOutput returns once the guest's stdout and stderr of the process
// reached EOF, or with ctx's error.
func (p *Process) WaitOutput(ctx context.Context) error {
	if r := p.stdio(); r != nil {
		return r.WaitOutput(ctx)
	}
	return nil
}

// CloseStdin closes the process's stdin, if it has a relay.
func (p *Process) CloseStdin() {
	if r := p.stdio(); r != nil {
		r.CloseStdin()
	}
}

// CloseRelay stops the stdio relay, if one was started.
func (p *Process) CloseRelay() {
	if r := p.stdio(); r != nil {
		r.Close()
	}
}

// ExecStart is when the shim reached each step of an exec's start, on the
// host's clock: for the "exec ended in the pod VM" log line, which
// `podvm bench exec` reads.
type ExecStart struct {
	Begin        time.Time // StartExec called
	ExecAnswered time.Time // the agent's ExecProcess answered: the process runs
	RelayStarted time.Time // the stdio relay runs
}

// ExecStarted says when the steps of an exec's start happened; zero for an
// init, or an exec not started. Complete once Start has returned.
func (p *Process) ExecStarted() ExecStart { return p.started }
