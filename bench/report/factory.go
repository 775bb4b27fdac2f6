package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/podvm/podvm/bench/result"
)

// Issue 16's goals for the factory modes other than none.
const (
	factoryReadyGoalMs    = 100.0
	factoryParallelGoalMs = 4000.0
	factoryParallelPods   = 10
	factoryRAMGoalRatio   = 0.5
	factoryDensityGoalPod = 60
)

// modeHandler is a podvm handler and its factory mode.
type modeHandler struct{ handler, mode string }

// podvmModes are the run's podvm handlers by name; a run from before
// factory modes were measured had one, podvm, with mode none.
func podvmModes(r *result.Results) []modeHandler {
	if r.Factory == nil || len(r.Factory.Handlers) == 0 {
		return []modeHandler{{"podvm", "none"}}
	}
	var out []modeHandler
	for h, m := range r.Factory.Handlers {
		out = append(out, modeHandler{h, m})
	}
	slices.SortFunc(out, func(a, b modeHandler) int { return strings.Compare(a.handler, b.handler) })
	return out
}

// factoryTargets are issue 16's targets, one per podvm handler (mode) for
// the figures each mode has, and the template's guest RAM against none's.
func factoryTargets(r *result.Results) []result.Target {
	var out []result.Target
	for _, mh := range podvmModes(r) {
		out = append(out, readyTarget(r, mh), parallelTarget(r, mh), densityModeTarget(r, mh))
	}
	return append(out, guestRAMTarget(r))
}

// goalFor is the goal of a mode: the bound for the factory modes, a
// figure to report for none (the baseline they are measured against).
func goalFor(mh modeHandler, bound string) string {
	if mh.mode == "none" {
		return "reported (the baseline)"
	}
	return bound
}

// judge is met or missed by ok, and reported for mode none.
func judge(mh modeHandler, ok bool) string {
	switch {
	case mh.mode == "none":
		return result.TargetReported
	case ok:
		return result.TargetMet
	}
	return result.TargetMissed
}

// readyTarget is VMM spawn to agent ready over the serial CRI pods of mh.
func readyTarget(r *result.Results, mh modeHandler) result.Target {
	t := result.Target{Name: fmt.Sprintf("VM start to agent ready (VMM spawn to the agent's first answer), %s (factory %s), CRI serial pods, median", mh.handler, mh.mode),
		Goal: goalFor(mh, fmt.Sprintf("<= %.0f ms under TCG", factoryReadyGoalMs)), Status: result.TargetNotMeasured}
	if r.Startup == nil {
		return t
	}
	for _, s := range r.Startup.Serial {
		if s.Handler != mh.handler || s.VMs == nil || s.VMs.VMMSpawnToAgentReady.N == 0 {
			continue
		}
		v := s.VMs
		t.Measured = fmt.Sprintf("%s median, %s p90 (%s, %d VMs; %d %s, %d booted after the factory failed)",
			ms(v.VMMSpawnToAgentReady.Median), ms(v.VMMSpawnToAgentReady.P90), accelName(s.Accelerator), v.VMMSpawnToAgentReady.N, v.Cloned, factoryMade(mh.mode), v.Fallbacks)
		if v.FirstFallback != "" {
			t.Measured += "; the factory's first failure: " + v.FirstFallback
		}
		t.Status = judge(mh, v.Fallbacks == 0 && v.VMMSpawnToAgentReady.Median <= factoryReadyGoalMs)
		if mh.mode != "none" && v.Cloned == 0 {
			t.Status = result.TargetNotMeasured
			t.Measured = "no VM was " + factoryMade(mh.mode) + ": " + t.Measured
		}
	}
	return t
}

// factoryMade says what the factory of mode does to give a pod a VM.
func factoryMade(mode string) string {
	if mode == "cache" {
		return "taken from the cache"
	}
	return "cloned"
}

// parallelTarget is ten CRI pods of mh at once, to the last one's output.
func parallelTarget(r *result.Results, mh modeHandler) result.Target {
	t := result.Target{Name: fmt.Sprintf("ten CRI pods at once to the last one's first output, %s (factory %s)", mh.handler, mh.mode),
		Goal: goalFor(mh, fmt.Sprintf("<= %s", ms(factoryParallelGoalMs))), Status: result.TargetNotMeasured}
	if r.Startup == nil {
		return t
	}
	for _, p := range r.Startup.Parallel {
		if p.Handler != mh.handler {
			continue
		}
		cloned := ""
		if p.VMs != nil && mh.mode != "none" {
			cloned = fmt.Sprintf("; %d %s, %d booted after the factory failed", p.VMs.Cloned, factoryMade(mh.mode), p.VMs.Fallbacks)
		}
		switch {
		case len(p.Failures) > 0:
			t.Measured = fmt.Sprintf("%d of %d pods failed: %s%s", len(p.Failures), p.Pods, p.Failures[0], cloned)
			t.Status = judge(mh, false)
		case p.Pods != factoryParallelPods:
			t.Measured = fmt.Sprintf("%s for %d pods, not ten%s", ms(p.WallMs), p.Pods, cloned)
		default:
			t.Measured = fmt.Sprintf("%s (%.2fx runc; each pod median %s; %s%s)", ms(p.WallMs), p.WallRatioToRunc,
				ms(p.ToFirstOutput.Median), accelName(p.Accelerator), cloned)
			t.Status = judge(mh, p.WallMs <= factoryParallelGoalMs && (p.VMs == nil || p.VMs.Fallbacks == 0))
		}
	}
	return t
}

// densityModeTarget is the highest idle pod count mh reached.
func densityModeTarget(r *result.Results, mh modeHandler) result.Target {
	t := result.Target{Name: fmt.Sprintf("idle pods running at once, %s (factory %s)", mh.handler, mh.mode),
		Goal: goalFor(mh, fmt.Sprintf(">= %d", factoryDensityGoalPod)), Status: result.TargetNotMeasured}
	d := densityOf(r, mh.handler)
	if d == nil {
		return t
	}
	t.Measured = fmt.Sprintf("%d of %d started (%s)", d.Reached, d.Requested, accelName(d.Accelerator))
	switch {
	case d.Failure != "":
		t.Measured += "; stopped by: " + d.Failure
		t.Status = judge(mh, d.Reached >= factoryDensityGoalPod)
	case d.Reached >= factoryDensityGoalPod || mh.mode == "none":
		t.Status = judge(mh, true)
	default:
		t.Measured += fmt.Sprintf("; the climb asked for %d, not %d", d.Requested, factoryDensityGoalPod)
	}
	return t
}

// guestRAMTarget compares the guest RAM PSS per idle pod (QEMU's and
// virtiofsd's shares of it) of the template mode with none's, at the
// highest pod count both measured.
func guestRAMTarget(r *result.Results) result.Target {
	t := result.Target{Name: "guest RAM PSS per idle pod, template over none, at the density climb's top common count",
		Goal: fmt.Sprintf("<= %.1f", factoryRAMGoalRatio), Status: result.TargetNotMeasured}
	var none, tpl *result.HandlerDensity
	for _, mh := range podvmModes(r) {
		switch mh.mode {
		case "none":
			none = densityOf(r, mh.handler)
		case "template":
			tpl = densityOf(r, mh.handler)
		}
	}
	if none == nil || tpl == nil {
		return t
	}
	a, b, ok := commonPoint(none, tpl)
	if !ok {
		return t
	}
	guest := func(m result.PodMemory) float64 { return m.VMMGuestRAMPSS + m.VirtiofsdGuestRAMPSS }
	if guest(a.PerPod) == 0 {
		return t
	}
	ratio := guest(b.PerPod) / guest(a.PerPod)
	t.Measured = fmt.Sprintf("%.2f: %.1f MiB (%s) against %.1f MiB (%s) at %d pods (%s)", ratio, guest(b.PerPod), tpl.Handler,
		guest(a.PerPod), none.Handler, a.Pods, accelName(tpl.Accelerator))
	t.Status = result.TargetMissed
	if ratio <= factoryRAMGoalRatio {
		t.Status = result.TargetMet
	}
	return t
}

// commonPoint is the last measurement of a and b at the highest pod count
// both reached.
func commonPoint(a, b *result.HandlerDensity) (pa, pb result.DensityPoint, ok bool) {
	for i := len(a.Points) - 1; i >= 0; i-- {
		for j := len(b.Points) - 1; j >= 0; j-- {
			if a.Points[i].Pods == b.Points[j].Pods {
				return a.Points[i], b.Points[j], true
			}
		}
	}
	return pa, pb, false
}

// factory is the summary's section on the factory modes: each podvm
// handler's first pod (which saves a VM template), its VM starts in the
// serial CRI pods, and how many VMs the factory gave.
func (w *markdown) factory(r *result.Results) {
	p := w.p
	p("## Factory modes\n\nEach podvm factory mode (docs/factory.md) is a CRI handler of its own in the same run. A template mode's first pod saves the VM template; it is timed before every benchmark and is in no other figure.\n\n")
	p("| handler | factory mode | first pod (saves the template) | VM start to agent ready, serial pods: median (p90) | VMs cloned or taken from the cache / booted after the factory failed, serial + at once |\n")
	p("| --- | --- | --- | --- | --- |\n")
	for _, mh := range podvmModes(r) {
		first := "—"
		for _, fp := range r.Factory.FirstPods {
			if fp.Handler == mh.handler {
				first = ms(fp.ToFirstOutputMs)
				if fp.Error != "" {
					first += " (failed: " + fp.Error + ")"
				}
			}
		}
		ready, cloned, fallbacks := "—", 0, 0
		if r.Startup != nil {
			for _, s := range r.Startup.Serial {
				if s.Handler == mh.handler && s.VMs != nil {
					ready = fmt.Sprintf("%s (%s)", ms(s.VMs.VMMSpawnToAgentReady.Median), ms(s.VMs.VMMSpawnToAgentReady.P90))
					cloned, fallbacks = cloned+s.VMs.Cloned, fallbacks+s.VMs.Fallbacks
				}
			}
			for _, s := range r.Startup.Parallel {
				if s.Handler == mh.handler && s.VMs != nil {
					cloned, fallbacks = cloned+s.VMs.Cloned, fallbacks+s.VMs.Fallbacks
				}
			}
		}
		p("| %s | %s | %s | %s | %d / %d |\n", mh.handler, mh.mode, first, ready, cloned, fallbacks)
	}
	p("\n")
}

// isFactoryMode says whether handler is a podvm handler of a factory mode
// other than none.
func isFactoryMode(r *result.Results, handler string) bool {
	return r.Factory != nil && r.Factory.Handlers[handler] != "" && r.Factory.Handlers[handler] != "none"
}
