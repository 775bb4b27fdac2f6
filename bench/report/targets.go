package report

import (
	"fmt"
	"strings"

	"github.com/podvm/podvm/bench/result"
)

// Goals of the benchmark issue.
const (
	bootGoalMs     = 500.0
	shimGoalMiB    = 15.0
	densityGoalPod = 20
)

// Targets checks the goals against the figures in r. None is
// asserted anywhere else: a missed target is reported, not failed.
func Targets(r *result.Results) []result.Target {
	var out []result.Target
	add := func(name, goal, measured, status string) {
		out = append(out, result.Target{Name: name, Goal: goal, Measured: measured, Status: status})
	}

	name := "boot to agent ready (VMM spawn to the agent's first answer), median"
	if b := r.Boot; b != nil && b.BootToAgentReady.N > 0 {
		accel := bootAccelerator(b)
		status := result.TargetMissed
		if b.BootToAgentReady.Median <= bootGoalMs {
			status = result.TargetMet
		}
		add(name, fmt.Sprintf("<= %.0f ms under TCG", bootGoalMs),
			fmt.Sprintf("%.0f ms median, %.0f ms p90 (%s, %d runs)", b.BootToAgentReady.Median, b.BootToAgentReady.P90, accel, b.BootToAgentReady.N), status)
	} else {
		add(name, fmt.Sprintf("<= %.0f ms under TCG", bootGoalMs), "", result.TargetNotMeasured)
	}

	name = "`ctr run --rm` of `true`, podvm as a ratio to runc in the same run"
	if b := r.Boot; b != nil && len(b.CtrRunTrue) > 0 {
		var parts []string
		for _, t := range b.CtrRunTrue {
			parts = append(parts, fmt.Sprintf("%s %.0f ms (%.2fx)", t.Runtime, t.Time.Median, t.MedianRatioToRunc))
		}
		add(name, "reported", "medians: "+strings.Join(parts, ", ")+"; "+bootAccelerator(b), result.TargetReported)
	} else {
		add(name, "reported", "", result.TargetNotMeasured)
	}

	out = append(out, execTarget(r), probeTarget(r))

	d := densityOf(r, "podvm")
	name = "shim PSS per pod"
	if d != nil && len(d.Points) > 0 {
		pt := d.Points[len(d.Points)-1]
		status := result.TargetMissed
		if pt.ShimPSS.Max <= shimGoalMiB {
			status = result.TargetMet
		}
		add(name, fmt.Sprintf("<= %.0f MiB", shimGoalMiB),
			fmt.Sprintf("%.1f MiB mean, %.1f MiB max over %d idle pods", pt.ShimPSS.Mean, pt.ShimPSS.Max, pt.Pods), status)
	} else {
		add(name, fmt.Sprintf("<= %.0f MiB", shimGoalMiB), "", result.TargetNotMeasured)
	}

	name = "host overhead per pod outside guest RAM, apart from the TCG translation cache"
	if d != nil && len(d.Points) > 0 {
		pt := d.Points[len(d.Points)-1]
		m := pt.PerPod
		add(name, "reported",
			fmt.Sprintf("%.1f MiB with, %.1f MiB without the TCG cache (%.1f MiB, tb-size %d MiB), mean of %d pods",
				m.HostOverhead, m.HostOverheadExclTCG, m.VMMTCGCachePSS, r.Host.VM.TBSizeMiB, pt.Pods), result.TargetReported)
	} else {
		add(name, "reported", "", result.TargetNotMeasured)
	}

	name = "concurrent idle podvm pods, no failure"
	if d != nil {
		status := result.TargetMissed
		if d.Reached >= densityGoalPod && d.Failure == "" {
			status = result.TargetMet
		}
		measured := fmt.Sprintf("%d of %d started", d.Reached, d.Requested)
		if d.Failure != "" {
			measured += "; stopped by: " + d.Failure
		}
		add(name, fmt.Sprintf(">= %d", densityGoalPod), measured, status)
	} else {
		add(name, fmt.Sprintf(">= %d", densityGoalPod), "", result.TargetNotMeasured)
	}

	out = append(out, factoryTargets(r)...)
	return append(out, runscTarget(r))
}

// runscTarget says whether gVisor ran beside runc and podvm.
func runscTarget(r *result.Results) result.Target {
	t := result.Target{Name: "gVisor (runsc) beside runc and podvm", Goal: "where possible"}
	if r.Host.Versions.Runsc != "" {
		t.Measured, t.Status = "measured: "+r.Host.Versions.Runsc, result.TargetReported
	} else {
		t.Measured, t.Status = "runsc not installed (`ci/install-tools.sh gvisor`)", result.TargetNotMeasured
	}
	return t
}

// bootAccelerator names the accelerator of the boot runs.
func bootAccelerator(b *result.Boot) string {
	one := ""
	for _, s := range b.Samples {
		if one != "" && s.Accelerator != one {
			return "mixed accelerators"
		}
		one = s.Accelerator
	}
	if one == "" {
		return "accelerator unknown"
	}
	return strings.ToUpper(one)
}

// densityOf is handler's density climb, nil if it was not measured.
func densityOf(r *result.Results, handler string) *result.HandlerDensity {
	if r.Density == nil {
		return nil
	}
	for i := range r.Density.Handlers {
		if r.Density.Handlers[i].Handler == handler {
			return &r.Density.Handlers[i]
		}
	}
	return nil
}
