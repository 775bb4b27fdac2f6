package task

import (
	"context"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/agent/api"
)

const mib = 1 << 20

func TestMemoryShare(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		host, base, reported uint64
		n                    int
		want                 uint64
	}{
		{"honest guest: reports at least the host's excess", 400 * mib, 160 * mib, 300 * mib, 1, 0},
		{"exactly the excess", 400 * mib, 160 * mib, 240 * mib, 1, 0},
		{"under-reports: raised to the excess", 400 * mib, 160 * mib, 10 * mib, 1, 230 * mib},
		{"reports nothing", 400 * mib, 160 * mib, 0, 1, 240 * mib},
		{"deficit split between two", 400 * mib, 160 * mib, 40 * mib, 2, 100 * mib},
		{"odd deficit rounds up", 10, 0, 0, 3, 4},
		{"host below base (freed since boot)", 100 * mib, 160 * mib, 0, 1, 0},
		{"host equal to base", 160 * mib, 160 * mib, 0, 1, 0},
		{"no container to raise", 400 * mib, 160 * mib, 0, 0, 0},
		{"huge figures do not wrap", ^uint64(0), 0, 0, 1, ^uint64(0)},
		{"huge deficit split does not wrap", ^uint64(0), 0, 0, 2, 1 << 63},
	} {
		if got := memoryShare(tc.host, tc.base, tc.reported, tc.n); got != tc.want {
			t.Errorf("%s: memoryShare(%d, %d, %d, %d) = %d; want %d", tc.name, tc.host, tc.base, tc.reported, tc.n, got, tc.want)
		}
	}
}

// lyingGuest reports every container's memory as 1 MiB, whatever the VM
// holds.
type lyingGuest struct{ fakePod }

func (lyingGuest) StatsContainer(context.Context, *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	b, err := proto.Marshal(&stats.Metrics{Memory: &stats.MemoryStat{Usage: 1 * mib, UsageLimit: 512 * mib, Anon: 1 * mib}})
	return &api.StatsContainerResponse{CgroupV2Metrics: b}, err
}

// TestStatsOfUnderReportingGuest: a guest that claims 1 MiB per container
// while the host charges the VM 600 MiB over its base is reported with
// the host's figure, split between the pod's app containers; the sandbox
// container keeps its own figure.
func TestStatsOfUnderReportingGuest(t *testing.T) {
	s, _ := testService(t)
	addTestContainer(t, s, "sandbox", true)
	addTestContainer(t, s, "app", false)
	addTestContainer(t, s, "sidecar", false)
	s.agent = lyingGuest{}
	s.mem = &podMemory{host: func() (uint64, error) { return 760 * mib, nil }, base: 160 * mib, reported: map[string]uint64{}}

	usage := func(id string) uint64 {
		resp, err := s.Stats(context.Background(), &taskAPI.StatsRequest{ID: id})
		if err != nil {
			t.Fatalf("Stats of %s: %v", id, err)
		}
		var m stats.Metrics
		if err := proto.Unmarshal(resp.Stats.Value, &m); err != nil {
			t.Fatal(err)
		}
		return m.Memory.Usage
	}
	// As CRI asks: every container, then again.
	var total uint64
	for range 2 {
		total = 0
		for _, id := range []string{"sandbox", "app", "sidecar"} {
			total += usage(id)
		}
	}
	if total < 600*mib {
		t.Errorf("the pod's containers report %d MiB in all; the host charges 600 MiB over the VM's base", total/mib)
	}
	if total > 602*mib {
		t.Errorf("the pod's containers report %d MiB in all; the deficit was counted more than once", total/mib)
	}
	if u := usage("sandbox"); u != 1*mib {
		t.Errorf("the sandbox container reports %d bytes; want the guest's own figure", u)
	}
	s.forget("sidecar")
	s.mem.mu.Lock()
	n := len(s.mem.reported)
	s.mem.mu.Unlock()
	if n != 2 {
		t.Errorf("memory figures kept for %d containers after one of three was deleted; want 2", n)
	}
}

// TestStatsWithoutHostFigure: with no host cgroup the guest's figures pass
// through unchanged.
func TestStatsWithoutHostFigure(t *testing.T) {
	s, _ := testService(t)
	addTestContainer(t, s, "app", true)
	s.agent = lyingGuest{}
	resp, err := s.Stats(context.Background(), &taskAPI.StatsRequest{ID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var m stats.Metrics
	if err := proto.Unmarshal(resp.Stats.Value, &m); err != nil {
		t.Fatal(err)
	}
	if m.Memory.Usage != 1*mib || m.Memory.Anon != 1*mib {
		t.Errorf("usage %d, anon %d; want the guest's figures", m.Memory.Usage, m.Memory.Anon)
	}
}

// inactiveLiar claims more inactive file memory than its usage, which
// containerd's working set (usage less inactive_file, 0 when inactive is
// larger) would turn into 0 whatever the usage.
type inactiveLiar struct{ lyingGuest }

func (inactiveLiar) StatsContainer(context.Context, *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	b, err := proto.Marshal(&stats.Metrics{Memory: &stats.MemoryStat{Usage: 1 * mib, InactiveFile: 1 << 60}})
	return &api.StatsContainerResponse{CgroupV2Metrics: b}, err
}

// TestStatsOfInactiveFileLiar: the floor holds for the working set CRI
// computes, not only for the usage field.
func TestStatsOfInactiveFileLiar(t *testing.T) {
	s, _ := testService(t)
	addTestContainer(t, s, "sandbox", true)
	addTestContainer(t, s, "app", false)
	s.agent = inactiveLiar{}
	s.mem = &podMemory{host: func() (uint64, error) { return 760 * mib, nil }, base: 160 * mib, reported: map[string]uint64{}}
	resp, err := s.Stats(context.Background(), &taskAPI.StatsRequest{ID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var m stats.Metrics
	if err := proto.Unmarshal(resp.Stats.Value, &m); err != nil {
		t.Fatal(err)
	}
	var ws uint64 // as containerd's CRI computes it
	if m.Memory.InactiveFile < m.Memory.Usage {
		ws = m.Memory.Usage - m.Memory.InactiveFile
	}
	if ws < 599*mib {
		t.Errorf("working set as CRI computes it: %d MiB (usage %d, inactive_file %d); the host charges 600 MiB over the VM's base", ws/mib, m.Memory.Usage, m.Memory.InactiveFile)
	}
}
