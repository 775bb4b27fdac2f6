package startup

import (
	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// vmStarts reads the VM starts of a podvm handler's pods (sandbox ids)
// from the shims' log lines: VMM spawn to agent ready, and how many VMs
// were clones of a VM template. Nil for other handlers, or when the log
// cannot be read.
func vmStarts(h *benchhost.Host, handler string, ids []string) *result.PodVMStarts {
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
	return out
}
