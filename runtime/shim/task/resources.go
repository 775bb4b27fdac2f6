package task

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podvm/podvm/agent/api"
)

// cgroupV2MetricsType is the type URL containerd gives cgroup v2 stats
// (github.com/containerd/cgroups/v3/cgroup2/stats.Metrics); CRI decodes it.
const cgroupV2MetricsType = "io.containerd.cgroups.v2.Metrics"

// statsTimeout bounds the guest's answer to a stats call. containerd asks
// for a container's stats while it handles the container's exit (to look
// for an OOM kill) within a 10 s budget: a guest that answers later, or
// never, must not use it up, or CRI never sees the container stop. (A
// variable for tests.)
var statsTimeout = 5 * time.Second

// Stats returns the container's guest cgroup stats, its memory usage
// bounded by the host's figure where the host can measure (podMemory). A
// stopped container has no cgroup left in the guest: it gets empty stats
// without a guest call (its OOM kill, if any, was published before its
// exit).
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if status, _, _ := c.Init().State(); status == task.Status_STOPPED {
		return &taskAPI.StatsResponse{Stats: &anypb.Any{TypeUrl: cgroupV2MetricsType}}, nil
	}
	agent, mem := s.guest()
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	resp, err := agent.StatsContainer(ctx, &api.StatsContainerRequest{ContainerId: r.ID})
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("stats of container %s: %w", r.ID, err))
	}
	metrics := resp.CgroupV2Metrics
	if mem != nil {
		if metrics, err = mem.bound(ctx, r.ID, metrics, s.containers.All()); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	return &taskAPI.StatsResponse{Stats: &anypb.Any{TypeUrl: cgroupV2MetricsType, Value: metrics}}, nil
}

// guest returns the VM's agent and the bound on its memory figures (nil
// when the host cannot measure the VM).
func (s *Service) guest() (api.AgentServiceService, *podMemory) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agent, s.mem
}

// Update changes the container's resources inside the guest. The VM's own
// size stays as it was booted (no hot-plug): a resize beyond it is refused
// (fitsVM), never applied as a limit the container cannot reach.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	if _, err := s.getContainer(r.ID); err != nil {
		return nil, err
	}
	v, err := typeurl.UnmarshalAny(r.Resources)
	if err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "decode resources for %s: %v", r.ID, err)
	}
	res, ok := v.(*specs.LinuxResources)
	if !ok {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "resources for %s are %T, want LinuxResources", r.ID, v)
	}
	sb := s.sandbox()
	if err := fitsVM(r.ID, res, sb.Size); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if _, err := sb.Agent.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: r.ID, Resources: b}); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("update resources of %s: %w", r.ID, err))
	}
	return &ptypes.Empty{}, nil
}

// Pids lists the container's processes by guest pid: the only pids that
// name them (none of them is a host process).
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	if _, err := s.getContainer(r.ID); err != nil {
		return nil, err
	}
	resp, err := s.sandbox().Agent.ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: r.ID})
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("list processes of %s: %w", r.ID, err))
	}
	var ps []*task.ProcessInfo
	for _, pid := range resp.Pids {
		ps = append(ps, &task.ProcessInfo{Pid: pid})
	}
	return &taskAPI.PidsResponse{Processes: ps}, nil
}
