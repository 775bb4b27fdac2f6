// Package stdio relays a guest process's standard streams between the host
// fifos containerd hands the shim and the agent's WriteStdin / ReadStdout /
// ReadStderr calls. One Relay serves one process.
package stdio

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
)

// chunk bounds one agent read or write: large enough to move a flood of
// output in few calls, small enough to keep one ttrpc message modest.
const chunk = 64 << 10

// Streams names the host side of each stream; an empty path means none.
type Streams struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// Agent is the part of the AgentService the relay uses.
type Agent interface {
	WriteStdin(context.Context, *api.WriteStreamRequest) (*api.WriteStreamResponse, error)
	CloseStdin(context.Context, *api.CloseStdinRequest) (*api.Empty, error)
	ReadStdout(context.Context, *api.ReadStreamRequest) (*api.ReadStreamResponse, error)
	ReadStderr(context.Context, *api.ReadStreamRequest) (*api.ReadStreamResponse, error)
}

// Relay copies one process's streams until they end.
type Relay struct {
	agent         Agent
	containerID   string
	execID        string
	ctx           context.Context
	cancel        context.CancelFunc
	stdin         io.ReadCloser
	stdinDone     chan struct{}
	outputs       sync.WaitGroup
	closeStdinOne sync.Once
}

// Validate rejects stream destinations the relay cannot serve, before a VM
// is booted for nothing.
func Validate(s Streams) error {
	for _, p := range []string{s.Stdin, s.Stdout, s.Stderr} {
		if p == "" {
			continue
		}
		u, err := url.Parse(p)
		if err == nil && u.Scheme != "" && u.Scheme != "fifo" {
			return fmt.Errorf("stdio destination %q: only fifos are supported (no %s:// log drivers yet)", p, u.Scheme)
		}
	}
	return nil
}

// Start opens the fifos and begins copying. The fifos are opened in the
// background where containerd may not have opened the other end yet.
func Start(ctx context.Context, agent Agent, containerID, execID string, s Streams) (*Relay, error) {
	if err := Validate(s); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &Relay{agent: agent, containerID: containerID, execID: execID, ctx: ctx, cancel: cancel, stdinDone: make(chan struct{})}

	for _, out := range []struct {
		path string
		read func(context.Context, *api.ReadStreamRequest) (*api.ReadStreamResponse, error)
	}{{s.Stdout, agent.ReadStdout}, {s.Stderr, agent.ReadStderr}} {
		if out.path == "" {
			continue
		}
		w, err := fifo.OpenFifo(ctx, out.path, syscall.O_WRONLY, 0)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("open output fifo %s: %w", out.path, err)
		}
		r.outputs.Add(1)
		go r.copyOut(w, out.read)
	}

	if s.Stdin == "" {
		// Nothing to close in the guest: it gave the process /dev/null.
		r.closeStdinOne.Do(func() { close(r.stdinDone) })
	} else {
		in, err := fifo.OpenFifo(ctx, s.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("open stdin fifo %s: %w", s.Stdin, err)
		}
		r.stdin = in
		go r.copyIn(in)
	}
	return r, nil
}

func (r *Relay) copyOut(w io.WriteCloser, read func(context.Context, *api.ReadStreamRequest) (*api.ReadStreamResponse, error)) {
	defer r.outputs.Done()
	defer w.Close()
	for {
		resp, err := read(r.ctx, &api.ReadStreamRequest{ContainerId: r.containerID, ExecId: r.execID, Len: chunk})
		if err != nil {
			if r.ctx.Err() == nil {
				log.G(r.ctx).WithError(err).WithField("container", r.containerID).Warn("relay output from guest")
			}
			return
		}
		if len(resp.Data) > 0 {
			if _, err := w.Write(resp.Data); err != nil {
				// The reader went away (ctr exited): keep draining the guest
				// pipe so the process never blocks on a full pipe.
				log.G(r.ctx).WithError(err).Debug("host reader of container output is gone")
			}
		}
		if resp.Eof {
			return
		}
		if len(resp.Data) == 0 {
			// The agent answers a read only when there is data or EOF; an
			// empty answer is a guest misbehaving, and must not make the
			// shim spin on it.
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(emptyReadBackoff):
			}
		}
	}
}

// emptyReadBackoff paces reads after an empty, not-EOF answer.
const emptyReadBackoff = 50 * time.Millisecond

func (r *Relay) copyIn(in io.Reader) {
	defer r.finishStdin()
	buf := make([]byte, chunk)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := r.agent.WriteStdin(r.ctx, &api.WriteStreamRequest{ContainerId: r.containerID, ExecId: r.execID, Data: buf[:n]}); werr != nil {
				if r.ctx.Err() == nil {
					log.G(r.ctx).WithError(werr).WithField("container", r.containerID).Warn("relay stdin to guest")
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// finishStdin closes the guest process's stdin once, after everything read
// from the fifo was forwarded.
func (r *Relay) finishStdin() {
	r.closeStdinOne.Do(func() {
		if r.ctx.Err() == nil {
			if _, err := r.agent.CloseStdin(r.ctx, &api.CloseStdinRequest{ContainerId: r.containerID, ExecId: r.execID}); err != nil {
				log.G(r.ctx).WithError(err).Debug("close stdin in guest")
			}
		}
		close(r.stdinDone)
	})
}

// stdinDrainGrace is how long CloseStdin lets bytes already written to the
// fifo reach the guest. Clients call CloseIO right after writing the last
// byte (ctr does), so closing the fifo at once would drop that tail.
const stdinDrainGrace = 2 * time.Second

// CloseStdin tells the guest process its stdin ended (containerd's CloseIO).
// The relay first forwards what the fifo still holds, until the fifo's EOF
// or stdinDrainGrace. It does not block.
func (r *Relay) CloseStdin() {
	if r.stdin == nil {
		return
	}
	go func() {
		select {
		case <-r.stdinDone:
		case <-time.After(stdinDrainGrace):
			r.stdin.Close() // the writer kept it open: stop waiting
		}
	}()
}

// WaitOutput blocks until stdout and stderr are drained (the guest reported
// EOF) or ctx ends.
func (r *Relay) WaitOutput(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.outputs.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops every copy and closes the host ends.
func (r *Relay) Close() {
	r.cancel()
	if r.stdin != nil {
		r.stdin.Close()
	}
	r.outputs.Wait()
}
