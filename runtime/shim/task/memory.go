package task

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/log"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/shim/container"
)

// vmmAllowance bounds the VMM's own share of the base (QEMU under TCG
// measured 155–164 MiB with the booted guest, docs/design.md).
const vmmAllowance = 256 << 20

// podMemory bounds the memory the guest reports for the pod's containers
// by what the host charges for the VM (docs/design.md, "Memory figures are
// bounded by the host's"): the containers together report at least the
// VM's host working set less base, the part that was charged when the
// agent first answered (the VMM and the booted guest), the deficit split
// evenly among the pod's app containers.
type podMemory struct {
	host func() (uint64, error) // the VM's host cgroup's working set
	base uint64

	mu       sync.Mutex
	reported map[string]uint64 // each container's last guest-reported working set
}

// newPodMemory measures the base of the VM in host cgroup path; nil when
// the VM has no host cgroup (nothing to measure) or it cannot be read.
// The base is capped at the guest's base memory plus vmmAllowance: a
// guest that touches its RAM before its agent answers must not raise it.
func newPodMemory(ctx context.Context, path string, guestBaseMiB uint32) *podMemory {
	if path == "" {
		return nil
	}
	host := func() (uint64, error) { return hostcgroup.MemoryWorkingSet(path) }
	base, err := host()
	if err != nil {
		log.G(ctx).WithError(err).Warn("the pod VM's host memory cannot be read; the guest's memory figures are reported unbounded")
		return nil
	}
	base = min(base, uint64(guestBaseMiB)<<20+vmmAllowance)
	return &podMemory{host: host, base: base, reported: map[string]uint64{}}
}

// memoryShare is what each of n containers' reported working sets is
// raised by so that together they report at least host − base, when the
// guest reported only reported in all.
func memoryShare(host, base, reported uint64, n int) uint64 {
	if n <= 0 || host <= base || host-base <= reported {
		return 0
	}
	deficit := host - base - reported
	share := deficit / uint64(n)
	if deficit%uint64(n) != 0 {
		share++
	}
	return share
}

// bound returns container id's guest metrics (cgroup v2, protobuf) with
// its memory usage raised by its share of the pod's deficit. cs are the
// shim's containers: the deficit goes to the app containers, to the
// sandbox container only when it is alone.
func (m *podMemory) bound(ctx context.Context, id string, raw []byte, cs []*container.Container) ([]byte, error) {
	var mt stats.Metrics
	if err := proto.Unmarshal(raw, &mt); err != nil {
		return nil, fmt.Errorf("decode the guest's stats of %s: %w", id, err)
	}
	if mt.Memory == nil {
		mt.Memory = &stats.MemoryStat{}
	}
	ws := mt.Memory.Usage - min(mt.Memory.InactiveFile, mt.Memory.Usage)
	host, err := m.host()
	if err != nil {
		log.G(ctx).WithError(err).Debug("host memory of the pod VM")
		return raw, nil
	}
	sum, sharers, mine := m.record(id, ws, cs)
	if !mine {
		return raw, nil
	}
	share := memoryShare(host, m.base, sum, sharers)
	if share == 0 {
		return raw, nil
	}
	// containerd's working set is usage less inactive_file, and 0 when
	// the guest claims more inactive file memory than usage: that claim is
	// cut to the usage it reported, so the raised figure counts in full.
	mt.Memory.InactiveFile = min(mt.Memory.InactiveFile, mt.Memory.Usage)
	mt.Memory.Usage += share
	if mt.Memory.Usage < share { // wrapped
		mt.Memory.Usage = ^uint64(0)
	}
	return proto.Marshal(&mt)
}

// record keeps id's reported working set and returns the sum the pod's
// containers last reported, how many share a deficit and whether id is
// one of them.
func (m *podMemory) record(id string, ws uint64, cs []*container.Container) (sum uint64, sharers int, mine bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reported[id] = ws
	var apps []string
	owner := ""
	for _, c := range cs {
		sum += m.reported[c.ID]
		if c.Owner {
			owner = c.ID
		} else {
			apps = append(apps, c.ID)
		}
	}
	if len(apps) == 0 && owner != "" {
		apps = []string{owner}
	}
	for _, a := range apps {
		mine = mine || a == id
	}
	return sum, len(apps), mine
}

// forget drops a deleted container's figure.
func (m *podMemory) forget(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reported, id)
}
