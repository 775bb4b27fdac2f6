package report

import (
	"fmt"
	"strings"

	"github.com/podvm/podvm/bench/result"
)

// execGoalRatio is issue 15's goal for `crictl exec true` in a running
// pod: podvm within this multiple of runc's median.
const execGoalRatio = 3.0

func (w *markdown) exec(e *result.Exec) {
	p := w.p
	p("## Exec in a running pod (`podvm bench startup`, exec)\n\nCRI `ExecSync` of `%s` in a running pod's container (what `crictl exec -s` does), %d per handler, handlers taking turns.\n\n",
		strings.Join(e.Command, " "), e.Runs)
	p("| runtime | execs | median | p90 | max | / runc (median) | / runc (p90) | failures |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, h := range e.Handlers {
		p("| %s | %d | %s | %s | %s | %.2fx | %.2fx | %d |\n", withAccel(h.Runtime, h.Accelerator), h.Time.N, ms(h.Time.Median),
			ms(h.Time.P90), ms(h.Time.Max), h.MedianRatioToRunc, h.P90RatioToRunc, len(h.Failures))
	}
	p("\n")
}

func (w *markdown) probe(pr *result.Probe) {
	p := w.p
	p("## HTTP probes into a pod (`podvm bench startup`, probe)\n\n")
	p("GET from the host to the pod's web server through the pod network, a new connection each (as the kubelet probes), %.0f ms apart: %d idle; then while %d other pods of the same handler start (`load_boot`) and, %d more, while they busy-loop (`load_busy`). Before each GET an ICMP echo (`ping`); `ping` and `connect` (the TCP handshake) are answered by the pod's kernel (for podvm: tap, virtio-net and the guest kernel), the rest of a GET needs the server process to run. Over %s: a kubelet probe with the default `timeoutSeconds: 1` would have failed.\n\n",
		pr.IntervalMs, pr.Requests, pr.LoadPods, pr.Requests, ms(pr.KubeletTimeoutMs))
	p("| runtime | phase | GETs | median | p90 | max | ping median | ping p90 | connect median | connect p90 | / runc (median) | / runc (p90) | over %s | failures |\n", ms(pr.KubeletTimeoutMs))
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, h := range pr.Handlers {
		for _, ph := range h.Phases {
			p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %.2fx | %.2fx | %d | %d |\n", withAccel(h.Runtime, h.Accelerator), ph.Name,
				ph.Response.N, msFine(ph.Response.Median), msFine(ph.Response.P90), msFine(ph.Response.Max),
				msFine(ph.Ping.Median), msFine(ph.Ping.P90), msFine(ph.Connect.Median),
				msFine(ph.Connect.P90), ph.MedianRatioToRunc, ph.P90RatioToRunc, ph.OverKubeletTimeout, len(ph.Failures))
		}
		for _, f := range h.Failures {
			p("\n%s: %s\n", h.Runtime, f)
		}
	}
	p("\n")
}

// msFine formats milliseconds with a decimal below 10 ms, where probes
// of an idle pod are.
func msFine(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return ms(v)
}

// execTarget is issue 15's exec goal against the figures.
func execTarget(r *result.Results) result.Target {
	t := result.Target{Name: "CRI exec of `true` in a running pod, podvm over runc, median",
		Goal: fmt.Sprintf("<= %.0fx runc", execGoalRatio), Status: result.TargetNotMeasured}
	if r.Exec == nil {
		return t
	}
	var parts []string
	var podvm *result.HandlerExec
	for i, h := range r.Exec.Handlers {
		parts = append(parts, fmt.Sprintf("%s %.0f ms", withAccel(h.Runtime, h.Accelerator), h.Time.Median))
		if h.Handler == "podvm" && h.Time.N > 0 {
			podvm = &r.Exec.Handlers[i]
		}
	}
	if podvm == nil || podvm.MedianRatioToRunc == 0 {
		return t
	}
	t.Measured = fmt.Sprintf("%.2fx (medians: %s; %d execs each)", podvm.MedianRatioToRunc, strings.Join(parts, ", "), r.Exec.Runs)
	t.Status = result.TargetMissed
	if podvm.MedianRatioToRunc <= execGoalRatio {
		t.Status = result.TargetMet
	}
	return t
}

// probeTarget reports issue 18's probe latency under load, podvm beside
// runc: a figure to report, the goal being no failed probe.
func probeTarget(r *result.Results) result.Target {
	t := result.Target{Name: "HTTP probe into a pod while other pods start and busy-loop, p90 and max",
		Goal: "reported (a kubelet probe fails over 1 s)", Status: result.TargetNotMeasured}
	if r.Probe == nil {
		return t
	}
	var parts []string
	for _, h := range r.Probe.Handlers {
		for _, ph := range h.Phases {
			if ph.Name == result.ProbeIdle || ph.Response.N == 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %s p90 %s max %s (%d over 1 s, %d failed)", withAccel(h.Runtime, h.Accelerator),
				ph.Name, msFine(ph.Response.P90), msFine(ph.Response.Max), ph.OverKubeletTimeout, len(ph.Failures)))
		}
	}
	if len(parts) == 0 {
		return t
	}
	t.Measured, t.Status = strings.Join(parts, "; "), result.TargetReported
	return t
}
