package report

import (
	"strings"
	"testing"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

func TestStartupCPU(t *testing.T) {
	cpu := func(pods int, vcpus float64) *result.CPUUse {
		return &result.CPUUse{Pods: pods, WindowMs: 700 * float64(pods), Components: []result.CPUComponent{
			{Name: "vm_vcpus", Seconds: vcpus * float64(pods), PerPodSeconds: vcpus}, {Name: "idle", Seconds: 0.2, PerPodSeconds: 0.2 / float64(pods)}}}
	}
	step := func(median float64) []result.StartStep {
		return []result.StartStep{{From: "vm_adopted", To: "agent_ready", Duration: stats.Summarize([]float64{median})}}
	}
	st := &result.Startup{
		Serial:   []result.HandlerStartup{{Handler: "podvm-cache", CPU: cpu(3, 0.4), Steps: step(60)}},
		Parallel: []result.HandlerParallel{{Handler: "podvm-cache", Pods: 10, CPU: cpu(10, 0.9), Steps: step(900)}, {Handler: "runc", Pods: 10}},
	}
	var w markdown
	w.startupCPU(st)
	got := w.String()
	lines := map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		lines[l] = true
	}
	want := []string{"#### podvm-cache: one pod at a time against 10 at once",
		"| vm_vcpus | 0.40 s | 0.90 s | 9.00 s |", "| vm_adopted | agent_ready | 60 ms | 900 ms | 900 ms |"}
	if !lines[want[0]] || !lines[want[1]] || !lines[want[2]] || strings.Contains(got, "#### runc") {
		t.Errorf("summary %q: want the lines %q and no section for runc (no figures)", got, want)
	}
}
