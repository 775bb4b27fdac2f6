package task

import (
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/sandbox"
)

// processStarted is when this shim process began (package initialization,
// within a millisecond or two of exec): the first phase of a pod VM's start
// as the shim sees it.
var processStarted = time.Now()

// startPhaseFields are the start phases of sandbox sb for the "pod VM ready"
// log line, which `podvm bench boot` reads: host timestamps as Unix
// nanoseconds, and the guest's own (CLOCK_BOOTTIME, the guest kernel's
// start is 0) together with the guest clock at the answer that arrived at
// host_agent_ready_ns, which places them on the host's timeline.
func startPhaseFields(sb *sandbox.Sandbox) log.Fields {
	t, d, info := sb.Timings, sb.Agent.Details, sb.Info()
	return log.Fields{
		"accelerator":            info.Accelerator,
		"host_shim_started_ns":   processStarted.UnixNano(),
		"host_sandbox_begin_ns":  t.Begin.UnixNano(),
		"host_vmm_spawned_ns":    info.StartedAt.UnixNano(),
		"host_vmm_running_ns":    t.VMMStarted.UnixNano(),
		"host_agent_ready_ns":    t.AgentReady.UnixNano(),
		"host_sandbox_ready_ns":  t.Ready.UnixNano(),
		"guest_agent_started_ns": d.AgentStartedNs,
		"guest_agent_ready_ns":   d.AgentReadyNs,
		"guest_clock_ns":         d.NowNs,
	}
}
