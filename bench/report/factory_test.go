package report

import (
	"strings"
	"testing"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// withTemplate is sample() with a podvm-template handler measured beside
// podvm (factory none).
func withTemplate() *result.Results {
	r := sample()
	sum := func(xs ...float64) stats.Summary { return stats.Summarize(xs) }
	r.Factory = &result.Factory{Handlers: map[string]string{"podvm": "none", "podvm-template": "template"},
		FirstPods: []result.FirstPod{{Handler: "podvm-template", ToFirstOutputMs: 9000}}}
	r.Startup.Serial[1].VMs = &result.PodVMStarts{FactoryMode: "none", VMMSpawnToAgentReady: sum(480, 500)}
	r.Startup.Serial = append(r.Startup.Serial, result.HandlerStartup{Handler: "podvm-template", Runtime: "podvm-template", Accelerator: "tcg",
		ToFirstOutput: sum(900, 1000), VMs: &result.PodVMStarts{FactoryMode: "template", VMMSpawnToAgentReady: sum(80, 90), Cloned: 2}})
	r.Startup.Parallel[0].Pods, r.Startup.Parallel[1].Pods = 10, 10
	r.Startup.Parallel = append(r.Startup.Parallel, result.HandlerParallel{Handler: "podvm-template", Runtime: "podvm-template",
		Accelerator: "tcg", Pods: 10, WallMs: 3500, VMs: &result.PodVMStarts{FactoryMode: "template", Cloned: 10}})
	tpl := r.Density.Handlers[1]
	tpl.Handler, tpl.Runtime = "podvm-template", "podvm-template"
	tpl.Points = []result.DensityPoint{{Pods: 25, PerPod: result.PodMemory{VMMGuestRAMPSS: 30}}}
	r.Density.Handlers = append(r.Density.Handlers, tpl)
	return r
}

func TestFactoryTargets(t *testing.T) {
	const (
		readyTpl  = "VM start to agent ready (VMM spawn to the agent's first answer), podvm-template (factory template), CRI serial pods, median"
		readyNone = "VM start to agent ready (VMM spawn to the agent's first answer), podvm (factory none), CRI serial pods, median"
		parTpl    = "ten CRI pods at once to the last one's first output, podvm-template (factory template)"
		ram       = "guest RAM PSS per idle pod, template over none, at the density climb's top common count"
		density   = "idle pods running at once, podvm-template (factory template)"
	)
	for _, tc := range []struct {
		name   string
		change func(r *result.Results)
		want   map[string]string
	}{
		{"as measured", func(*result.Results) {}, map[string]string{readyTpl: result.TargetMet, readyNone: result.TargetReported,
			parTpl: result.TargetMet, ram: result.TargetMet, density: result.TargetNotMeasured}},
		{"slow clones, fat RAM", func(r *result.Results) {
			r.Startup.Serial[2].VMs.VMMSpawnToAgentReady = stats.Summarize([]float64{150})
			r.Startup.Parallel[2].WallMs = 4100
			r.Density.Handlers[2].Points[0].PerPod.VMMGuestRAMPSS = 40
		}, map[string]string{readyTpl: result.TargetMissed, parTpl: result.TargetMissed, ram: result.TargetMissed}},
		{"clones fell back to boots", func(r *result.Results) {
			r.Startup.Serial[2].VMs.Cloned, r.Startup.Serial[2].VMs.Fallbacks = 0, 2
			r.Startup.Parallel[2].VMs.Fallbacks = 1
		}, map[string]string{readyTpl: result.TargetNotMeasured, parTpl: result.TargetMissed}},
		{"sixty reached", func(r *result.Results) { r.Density.Handlers[2].Requested, r.Density.Handlers[2].Reached = 60, 60 },
			map[string]string{density: result.TargetMet}},
		{"climb failed", func(r *result.Results) {
			r.Density.Handlers[2].Reached, r.Density.Handlers[2].Failure = 12, "pod 13: boom"
		},
			map[string]string{density: result.TargetMissed}},
		{"no common count", func(r *result.Results) { r.Density.Handlers[2].Points[0].Pods = 24 }, map[string]string{ram: result.TargetNotMeasured}},
		{"nothing run", func(r *result.Results) { r.Startup, r.Density = nil, nil }, map[string]string{readyTpl: result.TargetNotMeasured,
			parTpl: result.TargetNotMeasured, ram: result.TargetNotMeasured, density: result.TargetNotMeasured}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := withTemplate()
			tc.change(r)
			checkTargets(t, factoryTargets(r), 7, tc.want)
		})
	}
}

func TestFactorySummary(t *testing.T) {
	r := withTemplate()
	r.Targets = Targets(r)
	md := Summary(r)
	for _, want := range []string{"## Factory modes", "| podvm-template | template | 9.00 s |", "podvm-template (TCG)"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
}
