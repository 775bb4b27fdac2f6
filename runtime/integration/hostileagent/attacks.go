package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/agent/api"
)

// hostile is the real AgentService with the chosen attack's calls replaced.
type hostile struct {
	api.AgentServiceService
	attack  string
	victims []string

	mu  sync.Mutex
	own []string // containers this pod created
}

func newHostile(attack string, victims []string, real api.AgentServiceService) *hostile {
	return &hostile{AgentServiceService: real, attack: attack, victims: victims}
}

// stall never answers until the caller gives up.
func stall(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func (h *hostile) CreateContainer(ctx context.Context, r *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	h.mu.Lock()
	h.own = append(h.own, r.ContainerId)
	h.mu.Unlock()
	return h.AgentServiceService.CreateContainer(ctx, r)
}

func (h *hostile) GetOOMEvent(ctx context.Context, r *api.GetOOMEventRequest) (*api.OOMEvent, error) {
	if h.attack != "oom" {
		return h.AgentServiceService.GetOOMEvent(ctx, r)
	}
	h.mu.Lock()
	ids := append(append([]string{}, h.victims...), h.own...)
	h.mu.Unlock()
	var id string
	switch n := rand.IntN(4); {
	case n == 0:
		id = fmt.Sprintf("%064x", rand.Uint64())
	case n == 1:
		id = strings.Repeat(fmt.Sprint(rand.Uint64()), 1<<13)
	case len(ids) > 0:
		id = ids[rand.IntN(len(ids))]
	default:
		id = fmt.Sprint(rand.Uint64())
	}
	return &api.OOMEvent{ContainerId: id}, nil
}

func (h *hostile) GuestDetails(ctx context.Context, r *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	resp, err := h.AgentServiceService.GuestDetails(ctx, r)
	if err != nil || h.attack != "forge" {
		return resp, err
	}
	// Oversized, yet under ttrpc's 4 MiB message limit: a refused message
	// is no attack.
	big := strings.Repeat("\x1b[2J", 40<<10)
	resp.KernelRelease, resp.AgentVersion, resp.BootId = big, big, big
	return resp, nil
}

func (h *hostile) StatsContainer(ctx context.Context, r *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	switch h.attack {
	case "loris":
		return nil, stall(ctx)
	case "forge":
		// No memory at all (under-reporting, to be evicted last), absurd CPU.
		m := &stats.Metrics{
			CPU:    &stats.CPUStat{UsageUsec: 1 << 62, UserUsec: 1 << 62, SystemUsec: 1 << 62},
			Memory: &stats.MemoryStat{Usage: 0, UsageLimit: 1 << 63},
			Pids:   &stats.PidsStat{Current: 1 << 62},
		}
		m.Io = &stats.IOStat{}
		for i := range 1 << 15 {
			m.Io.Usage = append(m.Io.Usage, &stats.IOEntry{Major: uint64(i), Rbytes: 1 << 62})
		}
		b, err := proto.Marshal(m)
		return &api.StatsContainerResponse{CgroupV2Metrics: b}, err
	}
	return h.AgentServiceService.StatsContainer(ctx, r)
}

func (h *hostile) ListProcesses(ctx context.Context, r *api.ListProcessesRequest) (*api.ListProcessesResponse, error) {
	switch h.attack {
	case "loris":
		return nil, stall(ctx)
	case "forge":
		pids := make([]uint32, 0, 100000)
		for i := range uint32(100000) {
			pids = append(pids, i+1) // 1 and the host's low pids among them
		}
		return &api.ListProcessesResponse{Pids: pids}, nil
	}
	return h.AgentServiceService.ListProcesses(ctx, r)
}

func (h *hostile) ReadStdout(ctx context.Context, r *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	// An exec's output, endless and beyond the length asked for. (A
	// container's own endless output is the stdio load test's; here it
	// would only fill the test's log directory.)
	if h.attack == "forge" && r.ExecId != "" {
		return &api.ReadStreamResponse{Data: make([]byte, 1<<20)}, nil
	}
	return h.AgentServiceService.ReadStdout(ctx, r)
}

func (h *hostile) UpdateContainer(ctx context.Context, r *api.UpdateContainerRequest) (*api.Empty, error) {
	if h.attack == "loris" {
		return nil, stall(ctx)
	}
	return h.AgentServiceService.UpdateContainer(ctx, r)
}

func (h *hostile) ExecProcess(ctx context.Context, r *api.ExecProcessRequest) (*api.Empty, error) {
	if h.attack == "loris" {
		return nil, stall(ctx)
	}
	return h.AgentServiceService.ExecProcess(ctx, r)
}
