package boot

import (
	"math"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/bench/stats"
)

// run builds one run's shim log record and host times, all offsets in ms
// from ctr's start; the guest's answer said guestClock ms and arrived at
// agentReady.
func run(t0 time.Time, agentReady, guestClock float64) (shimlog.VMStart, time.Time, time.Time, time.Time) {
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	d := func(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
	vm := shimlog.VMStart{
		Accelerator: "tcg", Transport: "serial",
		ShimStarted: at(30), SandboxBegin: at(35), VMMSpawned: at(40), VMMRunning: at(90),
		AgentReady: at(agentReady), SandboxReady: at(agentReady + 10),
		GuestAgentStarted: d(350), GuestAgentReady: d(390), GuestClock: d(guestClock),
	}
	return vm, at(agentReady + 700), at(agentReady + 730), at(agentReady + 950)
}

func TestSampleOf(t *testing.T) {
	t0 := time.Unix(1000, 0)
	vm, started, first, exited := run(t0, 760, 460)
	s := sampleOf(t0, vm, started, first, exited, nil)
	want := map[string]float64{
		MarkCtrStarted: 0, MarkShimStarted: 30, MarkSandboxBegin: 35, MarkVMMSpawned: 40, MarkVMMRunning: 90,
		// 760 ms (arrival) - 460 ms (guest clock) = 300 ms.
		MarkKernelEntry: 300, MarkAgentStarted: 650, MarkAgentReady: 690, MarkHostAgentReady: 760,
		MarkSandboxReady: 770, MarkContainerStarted: 1460, MarkFirstOutput: 1490, MarkExited: 1710,
	}
	for k, v := range want {
		if math.Abs(s.Marks[k]-v) > 1e-6 {
			t.Errorf("mark %s = %v, want %v", k, s.Marks[k], v)
		}
	}
	if len(s.Marks) != len(want) || s.TotalMs != 1710 || s.Accelerator != "tcg" || s.Transport != "serial" {
		t.Errorf("sample %+v", s)
	}
}

func TestPhasesChainTheMarks(t *testing.T) {
	// Every phase starts where the one before ended: their sum is the
	// whole run.
	checkChain(t, phases, MarkCtrStarted, MarkExited)
}

// checkChain checks that defs run from first to last, each phase starting
// where the one before ended.
func checkChain(t *testing.T, defs []phaseDef, first, last string) {
	t.Helper()
	for i := 1; i < len(defs); i++ {
		if defs[i].from != defs[i-1].to {
			t.Errorf("phase %s starts at %s, the one before ends at %s", defs[i].name, defs[i].from, defs[i-1].to)
		}
	}
	if defs[0].from != first || defs[len(defs)-1].to != last {
		t.Errorf("phases run from %s to %s", defs[0].from, defs[len(defs)-1].to)
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := &result.Boot{}
	for _, r := range []struct{ agentReady, guestClock float64 }{{760, 460}, {800, 480}, {780, 470}} {
		vm, started, first, exited := run(t0, r.agentReady, r.guestClock)
		b.Samples = append(b.Samples, sampleOf(t0, vm, started, first, exited, nil))
	}
	summarize(b)
	if len(b.Phases) != len(phases) {
		t.Fatalf("%d phases", len(b.Phases))
	}
	// VMM spawn (40) to the agent's answer (760, 800, 780).
	if got := b.BootToAgentReady; got.N != 3 || got.Median != 740 || got.Max != 760 {
		t.Errorf("boot to agent ready %+v", got)
	}
	// The guest: 390 ms from its kernel's start to the agent serving.
	if got := b.GuestBootToAgentReady; math.Abs(got.Median-390) > 1e-6 {
		t.Errorf("guest boot to agent ready %+v", got)
	}
	sum := 0.0
	for _, p := range b.Phases {
		sum += p.Duration.Median
		if p.Name == "agent_ready_to_host" && (p.Clock != clockGuest || math.Abs(p.Duration.Median-80) > 1e-6) {
			t.Errorf("agent_ready_to_host %+v: want 80 ms (guest clock 470 - ready 390)", p)
		}
	}
	if math.Abs(sum-b.Samples[2].TotalMs) > 1e-6 {
		t.Errorf("phase medians add up to %v, the median run took %v", sum, b.Samples[2].TotalMs)
	}
}

func TestContainerPhasesSplitCreateStart(t *testing.T) {
	checkChain(t, containerPhases, MarkSandboxReady, MarkContainerStarted)
}

func TestSummarizeContainerPhases(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// Guest clock 460 ms at the answer that arrived at 760: guest time g
	// is host 300+g. Sandbox ready at 770, container started at 1460.
	vm, started, first, exited := run(t0, 760, 460)
	d := func(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
	marks := map[string]time.Duration{
		"create_begin": d(480), "bundle_written": d(490), "runtime_created": d(800),
		"create_end": d(805), "start_begin": d(850), "start_end": d(1100),
	}
	b := &result.Boot{Samples: []result.BootSample{sampleOf(t0, vm, started, first, exited, marks)}}
	summarize(b)
	want := map[string]float64{
		"create_call_to_guest": 10, "guest_spec_rewrite": 10, "guest_oci_create": 310, "guest_cgroup_oom_watch": 5,
		"guest_create_to_start": 45, "guest_oci_start": 250, "start_answer_to_host": 60,
	}
	if len(b.ContainerPhases) != len(want) {
		t.Fatalf("%d container phases, want %d", len(b.ContainerPhases), len(want))
	}
	sum := 0.0
	for _, p := range b.ContainerPhases {
		sum += p.Duration.Median
		if math.Abs(p.Duration.Median-want[p.Name]) > 1e-6 {
			t.Errorf("%s = %v ms, want %v", p.Name, p.Duration.Median, want[p.Name])
		}
	}
	if math.Abs(sum-690) > 1e-6 {
		t.Errorf("container phases add up to %v ms, container_create_start is 690", sum)
	}

	// An agent that sends no marks: no container phases.
	b = &result.Boot{Samples: []result.BootSample{sampleOf(t0, vm, started, first, exited, nil)}}
	summarize(b)
	if len(b.ContainerPhases) != 0 {
		t.Errorf("container phases without marks: %+v", b.ContainerPhases)
	}
}

func TestRatios(t *testing.T) {
	hs := []result.HandlerTimes{
		{Handler: "runc", Time: stats.Summary{Median: 100}},
		{Handler: "podvm", Time: stats.Summary{Median: 1500}},
		{Handler: "runsc", Time: stats.Summary{Median: 250}},
	}
	ratios(hs)
	for i, want := range []float64{1, 15, 2.5} {
		if hs[i].MedianRatioToRunc != want {
			t.Errorf("%s ratio %v, want %v", hs[i].Handler, hs[i].MedianRatioToRunc, want)
		}
	}
	noRunc := []result.HandlerTimes{{Handler: "podvm", Time: stats.Summary{Median: 1500}}}
	ratios(noRunc)
	if noRunc[0].MedianRatioToRunc != 0 {
		t.Errorf("ratio without runc %v", noRunc[0].MedianRatioToRunc)
	}
}
