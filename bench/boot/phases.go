package boot

import (
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/bench/stats"
)

// Marks of one run, in the order they happen (docs/benchmarks.md).
const (
	MarkCtrStarted        = "ctr_started"
	MarkShimStarted       = "shim_started"
	MarkSandboxBegin      = "sandbox_create_begin"
	MarkVMMSpawned        = "vmm_spawned"
	MarkVMMRunning        = "vmm_running"
	MarkKernelEntry       = "guest_kernel_entry"
	MarkAgentStarted      = "guest_agent_started"
	MarkAgentReady        = "guest_agent_ready"
	MarkHostAgentReady    = "host_agent_ready"
	MarkSandboxReady      = "sandbox_ready"
	MarkContainerStarted  = "container_started"
	MarkFirstOutput       = "first_output"
	MarkExited            = "ctr_exited"
	clockHost, clockGuest = "host", "guest"
	clockMapped           = "mapped"
)

// phaseDef is a phase: from one mark to the next.
type phaseDef struct{ name, from, to, clock string }

// phases chain the marks from ctr's start to its exit (vmm_running, QMP
// answering, overlaps the guest's boot and is a mark only).
var phases = []phaseDef{
	{"containerd_to_shim", MarkCtrStarted, MarkShimStarted, clockHost},
	{"shim_to_sandbox_create", MarkShimStarted, MarkSandboxBegin, clockHost},
	{"sandbox_create_to_vmm_spawn", MarkSandboxBegin, MarkVMMSpawned, clockHost},
	{"vmm_spawn_to_kernel_entry", MarkVMMSpawned, MarkKernelEntry, clockMapped},
	{"kernel_to_agent_start", MarkKernelEntry, MarkAgentStarted, clockGuest},
	{"agent_start_to_ready", MarkAgentStarted, MarkAgentReady, clockGuest},
	{"agent_ready_to_host", MarkAgentReady, MarkHostAgentReady, clockGuest},
	{"sandbox_setup", MarkHostAgentReady, MarkSandboxReady, clockHost},
	{"container_create_start", MarkSandboxReady, MarkContainerStarted, clockHost},
	{"container_to_first_output", MarkContainerStarted, MarkFirstOutput, clockHost},
	{"output_to_exit", MarkFirstOutput, MarkExited, clockHost},
}

// sampleOf turns one run's timestamps into marks (ms since ctr started).
func sampleOf(t0 time.Time, vm shimlog.VMStart, containerStarted, firstOutput, exited time.Time) result.BootSample {
	ms := func(t time.Time) float64 { return result.Ms(t.Sub(t0)) }
	guestMs := func(d time.Duration) float64 { return ms(vm.Guest(d)) }
	return result.BootSample{
		Accelerator: vm.Accelerator,
		Transport:   vm.Transport,
		TotalMs:     ms(exited),
		Marks: map[string]float64{
			MarkCtrStarted:       0,
			MarkShimStarted:      ms(vm.ShimStarted),
			MarkSandboxBegin:     ms(vm.SandboxBegin),
			MarkVMMSpawned:       ms(vm.VMMSpawned),
			MarkVMMRunning:       ms(vm.VMMRunning),
			MarkKernelEntry:      ms(vm.KernelEntry()),
			MarkAgentStarted:     guestMs(vm.GuestAgentStarted),
			MarkAgentReady:       guestMs(vm.GuestAgentReady),
			MarkHostAgentReady:   ms(vm.AgentReady),
			MarkSandboxReady:     ms(vm.SandboxReady),
			MarkContainerStarted: ms(containerStarted),
			MarkFirstOutput:      ms(firstOutput),
			MarkExited:           ms(exited),
		},
	}
}

// summarize fills the phase and headline summaries of b from its samples.
func summarize(b *result.Boot) {
	b.Phases = nil
	for _, p := range phases {
		var xs []float64
		for _, s := range b.Samples {
			xs = append(xs, s.Marks[p.to]-s.Marks[p.from])
		}
		b.Phases = append(b.Phases, result.Phase{Name: p.name, From: p.from, To: p.to, Clock: p.clock, Duration: stats.Summarize(xs)})
	}
	var toAgent, guestToAgent, toOutput []float64
	for _, s := range b.Samples {
		toAgent = append(toAgent, s.Marks[MarkHostAgentReady]-s.Marks[MarkVMMSpawned])
		guestToAgent = append(guestToAgent, s.Marks[MarkAgentReady]-s.Marks[MarkKernelEntry])
		toOutput = append(toOutput, s.Marks[MarkFirstOutput])
	}
	b.BootToAgentReady = stats.Summarize(toAgent)
	b.GuestBootToAgentReady = stats.Summarize(guestToAgent)
	b.ToFirstOutput = stats.Summarize(toOutput)
}

// ratios sets each handler's median ratio to runc's.
func ratios(hs []result.HandlerTimes) {
	base := 0.0
	for _, h := range hs {
		if h.Handler == "runc" {
			base = h.Time.Median
		}
	}
	for i := range hs {
		hs[i].MedianRatioToRunc = stats.Ratio(hs[i].Time.Median, base)
	}
}
