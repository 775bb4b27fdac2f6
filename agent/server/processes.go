package server

import (
	"context"
	"fmt"
	"math"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
)

func (s *Service) ExecProcess(ctx context.Context, req *api.ExecProcessRequest) (*api.Empty, error) {
	c, err := s.cfg.Containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	return empty(c.Exec(ctx, container.ExecRequest{
		ID:      req.ExecId,
		Process: req.Process,
		Stdio:   container.Stdio{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal},
	}))
}

// RemoveProcess forgets an exited exec.
func (s *Service) RemoveProcess(ctx context.Context, req *api.RemoveProcessRequest) (*api.Empty, error) {
	c, err := s.cfg.Containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	return empty(c.RemoveExec(req.ExecId))
}

func (s *Service) ResizeTTY(ctx context.Context, req *api.ResizeTTYRequest) (*api.Empty, error) {
	if req.Width > math.MaxUint16 || req.Height > math.MaxUint16 {
		return nil, fmt.Errorf("resize terminal of container %s to %dx%d: %w", req.ContainerId, req.Width, req.Height, errdefs.ErrInvalidArgument)
	}
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return empty(p.ResizeTTY(uint16(req.Width), uint16(req.Height)))
}

func (s *Service) ListProcesses(ctx context.Context, req *api.ListProcessesRequest) (*api.ListProcessesResponse, error) {
	c, err := s.cfg.Containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	pids, err := c.Pids()
	if err != nil {
		return nil, err
	}
	resp := &api.ListProcessesResponse{Pids: make([]uint32, len(pids))}
	for i, pid := range pids {
		resp.Pids[i] = uint32(pid)
	}
	return resp, nil
}

func (s *Service) StatsContainer(ctx context.Context, req *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	c, err := s.cfg.Containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	st, err := c.Stats()
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode stats of container %s: %w", req.ContainerId, err)
	}
	return &api.StatsContainerResponse{CgroupV2Metrics: data}, nil
}

func (s *Service) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	c, err := s.cfg.Containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	return empty(c.Update(ctx, req.Resources))
}

// GetOOMEvent blocks until a container's cgroup records an OOM kill. An
// event is taken from the queue only when a call is there to return it.
func (s *Service) GetOOMEvent(ctx context.Context, _ *api.GetOOMEventRequest) (*api.OOMEvent, error) {
	id, err := s.cfg.Containers.NextOOM(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for OOM events: %w", err)
	}
	return &api.OOMEvent{ContainerId: id}, nil
}

// guestMarks are the agent's marks as the protocol carries them.
func guestMarks(marks []container.Mark) []*api.GuestMark {
	out := make([]*api.GuestMark, 0, len(marks))
	for _, m := range marks {
		out = append(out, &api.GuestMark{Name: m.Name, BoottimeNs: m.At})
	}
	return out
}
