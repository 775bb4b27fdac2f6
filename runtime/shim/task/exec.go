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
	if !c.AddExec(r.ExecID, streams, r.Spec.GetValue()) {
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "exec %q in container %s", r.ExecID, r.ID)
	}
	s.send(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &ptypes.Empty{}, nil
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
	if r.Stdin {
		p.CloseStdin()
	}
	return &ptypes.Empty{}, nil
}
