package server

import (
	"context"
	"fmt"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/container"
)

const (
	// defaultReadLen applies when a read request says len 0.
	defaultReadLen = 32 << 10
	// maxReadLen keeps a reply well under ttrpc's 4 MiB message limit.
	maxReadLen = 1 << 20
)

func (s *Service) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	c, err := s.cfg.Containers.Create(ctx, container.CreateRequest{
		ID:    req.ContainerId,
		Spec:  req.OciSpec,
		Stdio: container.Stdio{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal},
	})
	if err != nil {
		return nil, err
	}
	return &api.CreateContainerResponse{Pid: uint32(c.Pid())}, nil
}

func (s *Service) StartContainer(ctx context.Context, req *api.StartContainerRequest) (*api.StartContainerResponse, error) {
	c, err := s.cfg.Containers.Get(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return &api.StartContainerResponse{Marks: guestMarks(c.Marks())}, nil
}

func (s *Service) RemoveContainer(ctx context.Context, req *api.RemoveContainerRequest) (*api.Empty, error) {
	return empty(s.cfg.Containers.Remove(ctx, req.ContainerId))
}

// process finds the process a request names.
func (s *Service) process(containerID, execID string) (*container.Process, error) {
	c, err := s.cfg.Containers.Get(containerID)
	if err != nil {
		return nil, err
	}
	return c.Process(execID)
}

func (s *Service) WaitProcess(ctx context.Context, req *api.WaitProcessRequest) (*api.WaitProcessResponse, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	e, err := p.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for container %s: %w", req.ContainerId, err)
	}
	marks := append(p.Marks(), container.MarkNow(contract.MarkWaitAnswer))
	return &api.WaitProcessResponse{ExitStatus: uint32(e.Status), ExitedAtNs: e.At.UnixNano(), OomKilled: e.OOMKilled, Marks: guestMarks(marks)}, nil
}

func (s *Service) SignalProcess(ctx context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
	if req.Signal == 0 || req.Signal > 64 {
		return nil, fmt.Errorf("signal %d to container %s: %w", req.Signal, req.ContainerId, errdefs.ErrInvalidArgument)
	}
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return empty(p.Signal(ctx, syscall.Signal(req.Signal), req.All))
}

func (s *Service) WriteStdin(ctx context.Context, req *api.WriteStreamRequest) (*api.WriteStreamResponse, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	n, err := p.WriteStdin(ctx, req.Data)
	if err != nil {
		return nil, err
	}
	return &api.WriteStreamResponse{Len: uint32(n)}, nil
}

func (s *Service) CloseStdin(ctx context.Context, req *api.CloseStdinRequest) (*api.Empty, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return empty(p.CloseStdin())
}

func (s *Service) ReadStdout(ctx context.Context, req *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return readResponse(p.ReadStdout(ctx, readLen(req.Len)))
}

func (s *Service) ReadStderr(ctx context.Context, req *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return readResponse(p.ReadStderr(ctx, readLen(req.Len)))
}

func readLen(n uint32) int {
	switch {
	case n == 0:
		return defaultReadLen
	case n > maxReadLen:
		return maxReadLen
	}
	return int(n)
}

func readResponse(data []byte, eof bool, err error) (*api.ReadStreamResponse, error) {
	if err != nil {
		return nil, err
	}
	return &api.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// empty is the reply of a call that returns only success or an error.
func empty(err error) (*api.Empty, error) {
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}
