package task

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/stdio"
)

// Exec registers an additional process; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	streams := stdio.Streams{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := stdio.Validate(streams); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "%v", err)
	}
	if r.Spec == nil || len(r.Spec.GetValue()) == 0 {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec %s in container %s has no process spec", r.ExecID, r.ID)
	}
	p := newProcess(r.ID, r.ExecID, streams)
	// The process spec travels as JSON, as containerd encodes it.
	p.execSpec = r.Spec.GetValue()
	s.mu.Lock()
	if _, dup := c.execs[r.ExecID]; dup || r.ExecID == "" {
		s.mu.Unlock()
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "exec %q in container %s", r.ExecID, r.ID)
	}
	c.execs[r.ExecID] = p
	s.mu.Unlock()
	s.send(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &ptypes.Empty{}, nil
}

// startExec runs p in the guest and starts relaying its stdio.
func (s *Service) startExec(ctx context.Context, sb *sandbox.Sandbox, p *process) error {
	_, err := sb.Agent.ExecProcess(ctx, &api.ExecProcessRequest{
		ContainerId: p.containerID, ExecId: p.execID, Process: p.execSpec,
		Stdin: p.streams.Stdin != "", Stdout: p.streams.Stdout != "", Stderr: p.streams.Stderr != "",
		Terminal: p.streams.Terminal,
	})
	if err != nil {
		return fmt.Errorf("exec %s in container %s: %w", p.execID, p.containerID, err)
	}
	relay, err := stdio.Start(ctx, sb.Agent, p.containerID, p.execID, p.streams)
	if err != nil {
		sb.Agent.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: p.containerID, ExecId: p.execID, Signal: 9})
		return err
	}
	p.mu.Lock()
	p.relay = relay
	p.mu.Unlock()
	return nil
}

// ResizePty sets a terminal process's window size.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	if _, _, err := s.getProcess(r.ID, r.ExecID); err != nil {
		return nil, err
	}
	if _, err := s.sandbox().Agent.ResizeTTY(ctx, &api.ResizeTTYRequest{ContainerId: r.ID, ExecId: r.ExecID, Width: r.Width, Height: r.Height}); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("resize terminal of %s %s: %w", r.ID, r.ExecID, err))
	}
	return &ptypes.Empty{}, nil
}

// CloseIO closes the process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	relay := p.relay
	p.mu.Unlock()
	if r.Stdin && relay != nil {
		relay.CloseStdin()
	}
	return &ptypes.Empty{}, nil
}
