package boot

import (
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/bench/stats"
)

// Marks of one run, in the order they happen (docs/benchmarks.md).
const (
	MarkCtrStarted       = "ctr_started"
	MarkShimStarted      = "shim_started"
	MarkSandboxBegin     = "sandbox_create_begin"
	MarkVMMSpawned       = "vmm_spawned"
	MarkVMMRunning       = "vmm_running"
	MarkKernelEntry      = "guest_kernel_entry"
	MarkAgentStarted     = "guest_agent_started"
	MarkAgentReady       = "guest_agent_ready"
	MarkHostAgentReady   = "host_agent_ready"
	MarkSandboxReady     = "sandbox_ready"
	MarkContainerStarted = "container_started"
	// The agent's marks of the container's create and start (guest clock),
	// named "guest_" + contract.Mark*.
	MarkGuestCreateBegin    = "guest_" + contract.MarkCreateBegin
	MarkGuestBundleWritten  = "guest_" + contract.MarkBundleWritten
	MarkGuestRuntimeCreated = "guest_" + contract.MarkRuntimeCreated
	MarkGuestCreateEnd      = "guest_" + contract.MarkCreateEnd
	MarkGuestStartBegin     = "guest_" + contract.MarkStartBegin
	MarkGuestStartEnd       = "guest_" + contract.MarkStartEnd
	MarkFirstOutput         = "first_output"
	MarkExited              = "ctr_exited"
	clockHost, clockGuest   = "host", "guest"
	clockMapped             = "mapped"
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

// containerPhases split container_create_start by the agent's marks: the
// calls' way to the guest and back (mapped), and the agent's own steps.
var containerPhases = []phaseDef{
	{"create_call_to_guest", MarkSandboxReady, MarkGuestCreateBegin, clockMapped},
	{"guest_spec_rewrite", MarkGuestCreateBegin, MarkGuestBundleWritten, clockGuest},
	{"guest_oci_create", MarkGuestBundleWritten, MarkGuestRuntimeCreated, clockGuest},
	{"guest_cgroup_oom_watch", MarkGuestRuntimeCreated, MarkGuestCreateEnd, clockGuest},
	{"guest_create_to_start", MarkGuestCreateEnd, MarkGuestStartBegin, clockGuest},
	{"guest_oci_start", MarkGuestStartBegin, MarkGuestStartEnd, clockGuest},
	{"start_answer_to_host", MarkGuestStartEnd, MarkContainerStarted, clockMapped},
}

// sampleOf turns one run's timestamps into marks (ms since ctr started).
func sampleOf(t0 time.Time, vm shimlog.VMStart, containerStarted, firstOutput, exited time.Time, guestMarks map[string]time.Duration) result.BootSample {
	ms := func(t time.Time) float64 { return result.Ms(t.Sub(t0)) }
	guestMs := func(d time.Duration) float64 { return ms(vm.Guest(d)) }
	s := result.BootSample{
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
	for name, d := range guestMarks {
		s.Marks["guest_"+name] = guestMs(d)
	}
	return s
}

// summarize fills the phase and headline summaries of b from its samples.
func summarize(b *result.Boot) {
	b.Phases = summarizePhases(b.Samples, phases)
	b.ContainerPhases = nil
	if cp := summarizePhases(b.Samples, containerPhases); len(cp) > 0 && cp[0].Duration.N > 0 {
		b.ContainerPhases = cp
	}
	b.TeardownPhases = nil
	if tp := summarizePhases(b.Samples, teardownPhases); tp[1].Duration.N > 0 {
		b.TeardownPhases = tp
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

// summarizePhases summarizes each phase over the samples that have both
// its marks (an agent older than the container marks sends none).
func summarizePhases(samples []result.BootSample, defs []phaseDef) []result.Phase {
	var out []result.Phase
	for _, p := range defs {
		var xs []float64
		for _, s := range samples {
			from, ok1 := s.Marks[p.from]
			to, ok2 := s.Marks[p.to]
			if ok1 && ok2 {
				xs = append(xs, to-from)
			}
		}
		out = append(out, result.Phase{Name: p.name, From: p.from, To: p.to, Clock: p.clock, Duration: stats.Summarize(xs)})
	}
	return out
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
