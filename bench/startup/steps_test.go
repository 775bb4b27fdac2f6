package startup

import (
	"testing"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/shimlog"
)

func TestStartSteps(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	times := benchhost.PodTimes{Started: t0, RunPodSandbox: 300 * ms, CreateContainer: 20 * ms, StartContainer: 100 * ms, Output: 10 * ms}
	l := &shimlog.Log{
		VMs: map[string]shimlog.VMStart{"a": {ShimStarted: t0.Add(10 * ms), SandboxBegin: t0.Add(30 * ms), VMMSpawned: t0.Add(80 * ms),
			VMMRunning: t0.Add(90 * ms), AgentReady: t0.Add(150 * ms), SandboxReady: t0.Add(200 * ms)}},
		ContainerStarted: map[string]time.Time{"a": t0.Add(280 * ms), "a-app": t0.Add(410 * ms)},
	}
	pods := []started{{id: "a", app: "a-app", t: times}, {id: "b", failed: true}}
	got := startSteps(pods, l)
	want := []struct {
		from, to string
		ms       float64
	}{
		{"run_pod_sandbox_called", "shim_started", 10}, {"shim_started", "sandbox_begin", 20}, {"sandbox_begin", "vm_adopted", 50},
		{"vm_adopted", "vmm_moved", 10}, {"vmm_moved", "agent_ready", 60}, {"agent_ready", "sandbox_ready", 50},
		{"sandbox_ready", "pause_started", 80}, {"pause_started", "run_pod_sandbox_returned", 20},
		{"run_pod_sandbox_returned", "create_container_returned", 20}, {"create_container_returned", "app_started", 90},
		{"app_started", "start_container_returned", 10}, {"start_container_returned", "output_seen", 10},
	}
	if len(got) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.From != w.from || g.To != w.to || g.Duration.N != 1 || g.Duration.Median != w.ms {
			t.Errorf("step %d: %s -> %s %+v, want %s -> %s %v ms", i, g.From, g.To, g.Duration, w.from, w.to, w.ms)
		}
	}
	// Without the shims' marks (runc) only the CRI steps remain.
	if got := startSteps(pods, nil); len(got) != 4 || got[0].To != "run_pod_sandbox_returned" || got[0].Duration.Median != 300 {
		t.Errorf("CRI steps %+v", got)
	}
}
