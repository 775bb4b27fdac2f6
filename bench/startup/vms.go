package startup

import (
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// vmStarts reads the VM starts of a podvm handler's pods (sandbox ids)
// from the shims' log lines: VMM spawn to agent ready, and how many VMs
// were clones of a VM template, and the guest's creates of their pause
// and app containers (apps: the app containers' ids). Nil for other handlers, or when the log
// cannot be read.
func vmStarts(h *benchhost.Host, handler string, ids, apps []string) *result.PodVMStarts {
	if !benchhost.IsPodvm(handler) {
		return nil
	}
	l, err := h.ShimLog()
	if err != nil {
		return nil
	}
	clones, err := h.ReadClones()
	if err != nil {
		return nil
	}
	out := &result.PodVMStarts{FactoryMode: benchhost.FactoryMode(handler)}
	var toReady []float64
	for _, id := range ids {
		if vm, ok := l.VMs[id]; ok {
			toReady = append(toReady, result.Ms(vm.AgentReady.Sub(vm.VMMSpawned)))
		}
		if clones.Cloned[id] {
			out.Cloned++
		}
		if clones.Fallbacks[id] {
			out.Fallbacks++
			if out.FirstFallback == "" {
				out.FirstFallback = clones.FirstFallback
			}
		}
	}
	out.VMMSpawnToAgentReady = stats.Summarize(toReady)
	out.Creates = guestCreates(l.ContainerGuestMarks, ids, apps)
	return out
}

// guestCreates summarizes the agent's marks of the pods' pause containers
// (named by the sandbox id) and app containers: which of a VM's creates
// is cheap shows where warming it pays.
func guestCreates(marks map[string]map[string]time.Duration, sandboxes, apps []string) []result.GuestCreate {
	var out []result.GuestCreate
	for _, c := range []struct {
		name string
		ids  []string
	}{{"pause", sandboxes}, {"app", apps}} {
		var oci, both []float64
		for _, id := range c.ids {
			m := marks[id]
			if len(m) == 0 {
				continue
			}
			oci = append(oci, result.Ms(m[contract.MarkRuntimeCreated]-m[contract.MarkBundleWritten]))
			both = append(both, result.Ms(m[contract.MarkCreateEnd]-m[contract.MarkCreateBegin]+m[contract.MarkStartEnd]-m[contract.MarkStartBegin]))
		}
		if len(oci) > 0 {
			out = append(out, result.GuestCreate{Container: c.name, OCICreate: stats.Summarize(oci), CreateStart: stats.Summarize(both)})
		}
	}
	return out
}
