package task

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"

	"github.com/podvm/podvm/runtime/stdio"
)

// process is one guest process (a container's init) as the shim tracks it.
//
//	created --Start--> running --exit--> stopped --Delete--> (removed)
//	created --------------exit or VM death--> stopped
//
// Exit is recorded exactly once, whichever comes first: the agent's
// WaitProcess answer or the VM's death (status 255).
type process struct {
	containerID string
	execID      string
	guestPid    uint32
	streams     stdio.Streams
	relay       *stdio.Relay
	execSpec    []byte // OCI Process JSON of an exec

	mu         sync.Mutex
	status     task.Status
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{}
}

func newProcess(containerID, execID string, streams stdio.Streams) *process {
	return &process{containerID: containerID, execID: execID, streams: streams, status: task.Status_CREATED, exited: make(chan struct{})}
}

func (p *process) state() (task.Status, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exitStatus, p.exitedAt
}

func (p *process) setRunning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != task.Status_CREATED {
		return false
	}
	p.status = task.Status_RUNNING
	return true
}

// setExited records the exit; it reports false if one was already recorded.
func (p *process) setExited(status uint32, at time.Time) bool {
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

func (p *process) wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeRelay stops the stdio relay, if one was started.
func (p *process) closeRelay() {
	p.mu.Lock()
	r := p.relay
	p.mu.Unlock()
	if r != nil {
		r.Close()
	}
}
