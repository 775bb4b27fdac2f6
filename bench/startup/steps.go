package startup

import (
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/bench/stats"
)

// started is one pod's start as the benchmark saw it.
type started struct {
	id, app string
	t       benchhost.PodTimes
	failed  bool // t is not whole
}

// The marks of a pod's start, in their order: the CRI calls' returns, and
// for podvm the shims' log lines ("pod VM ready", "container started in
// the pod VM"). For a cached VM vm_adopted is the claim and adoption's
// end and vmm_moved the move into the pod's cgroup and netns.
var stepMarks = []string{"run_pod_sandbox_called", "shim_started", "sandbox_begin", "vm_adopted", "vmm_moved",
	"agent_ready", "sandbox_ready", "pause_started", "run_pod_sandbox_returned", "create_container_returned",
	"app_started", "start_container_returned", "output_seen"}

// podMarks places one pod's marks on the host's clock (missing marks are
// absent: runc's pods have the CRI ones only).
func podMarks(p started, l *shimlog.Log) map[string]time.Time {
	m := map[string]time.Time{"run_pod_sandbox_called": p.t.Started}
	runp := p.t.Started.Add(p.t.RunPodSandbox)
	m["run_pod_sandbox_returned"] = runp
	m["create_container_returned"] = runp.Add(p.t.CreateContainer)
	m["start_container_returned"] = runp.Add(p.t.CreateContainer + p.t.StartContainer)
	m["output_seen"] = runp.Add(p.t.CreateContainer + p.t.StartContainer + p.t.Output)
	if l == nil {
		return m
	}
	if vm, ok := l.VMs[p.id]; ok {
		m["shim_started"], m["sandbox_begin"], m["vm_adopted"] = vm.ShimStarted, vm.SandboxBegin, vm.VMMSpawned
		m["vmm_moved"], m["agent_ready"], m["sandbox_ready"] = vm.VMMRunning, vm.AgentReady, vm.SandboxReady
	}
	if t, ok := l.ContainerStarted[p.id]; ok {
		m["pause_started"] = t
	}
	if t, ok := l.ContainerStarted[p.app]; ok {
		m["app_started"] = t
	}
	return m
}

// hostSteps is startSteps with the shims' marks from h's log (none if it
// cannot be read).
func hostSteps(pods []started, h *benchhost.Host) []result.StartStep {
	l, err := h.ShimLog()
	if err != nil {
		l = nil
	}
	return startSteps(pods, l)
}

// startSteps summarizes the steps, between consecutive marks that every
// pod has, of the pods that started.
func startSteps(pods []started, l *shimlog.Log) []result.StartStep {
	var all []map[string]time.Time
	for _, p := range pods {
		if !p.failed {
			all = append(all, podMarks(p, l))
		}
	}
	if len(all) == 0 {
		return nil
	}
	var present []string
	for _, name := range stepMarks {
		ok := true
		for _, m := range all {
			if m[name].IsZero() {
				ok = false
			}
		}
		if ok {
			present = append(present, name)
		}
	}
	var out []result.StartStep
	for i := 1; i < len(present); i++ {
		from, to := present[i-1], present[i]
		var ms []float64
		for _, m := range all {
			ms = append(ms, result.Ms(m[to].Sub(m[from])))
		}
		out = append(out, result.StartStep{From: from, To: to, Duration: stats.Summarize(ms)})
	}
	return out
}
