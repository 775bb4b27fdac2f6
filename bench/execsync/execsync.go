// Package execsync is the exec benchmark of `podvm bench startup`: one
// running pod per handler, then CRI ExecSync of `true` in its container
// (what `crictl exec -s` and the kubelet's exec probes do), the handlers
// taking turns, reported per handler and as podvm's ratio to runc.
package execsync

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// Options say how many execs to time.
type Options struct {
	// Runs is how many execs each handler is timed for.
	Runs     int
	Progress io.Writer
}

// command is what every exec runs: nothing, so the time is the exec path.
var command = []string{"true"}

const (
	// execTimeout is ExecSync's own timeout (whole seconds in CRI).
	execTimeout = 60 * time.Second
	podTimeout  = 5 * time.Minute
)

// Run starts a pod per handler of h, times o.Runs execs in each, and
// removes the pods.
func Run(ctx context.Context, h *benchhost.Host, o Options) (*result.Exec, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	pods := map[string]*benchhost.Pod{}
	defer func() {
		for _, p := range pods {
			h.RemovePod(context.WithoutCancel(ctx), p)
		}
	}()
	for _, handler := range h.Handlers {
		sctx, cancel := context.WithTimeout(ctx, podTimeout)
		p, _, err := h.StartPod(sctx, handler, "exec-"+handler, []string{"sleep", "3600"}, "")
		cancel()
		pods[handler] = p
		if err != nil {
			return nil, fmt.Errorf("exec pod (%s): %w", handler, err)
		}
		// Warm-up, not recorded: the first exec pulls runc's pages in.
		if _, err := timeExec(ctx, h, p); err != nil {
			return nil, fmt.Errorf("warm-up exec (%s): %w", handler, err)
		}
	}
	samples := map[string]*runs{}
	for _, handler := range h.Handlers {
		samples[handler] = &runs{}
	}
	for i := 1; i <= o.Runs && ctx.Err() == nil; i++ {
		for k := range h.Handlers {
			handler := h.Handlers[(k+i)%len(h.Handlers)]
			c, err := timeExec(ctx, h, pods[handler])
			samples[handler].add(c, err)
		}
	}
	out := &result.Exec{Runs: o.Runs, Command: command}
	accel := h.VMAccelerator()
	l, logErr := h.ShimLog()
	for _, handler := range h.Handlers {
		r := samples[handler].result(handler)
		if benchhost.IsPodvm(handler) {
			r.Accelerator = accel
			if logErr == nil {
				r.Phases = execPhases(l, pods[handler].ContainerID, samples[handler].calls)
			}
		}
		out.Handlers = append(out.Handlers, r)
	}
	SetRatios(out)
	report(o.Progress, out)
	return out, ctx.Err()
}

// report prints each handler's execs and podvm's phases.
func report(w io.Writer, out *result.Exec) {
	for _, r := range out.Handlers {
		fmt.Fprintf(w, "    exec true, %s: median %.0f ms, p90 %.0f ms, %.2fx runc (%d execs, %d failed)\n",
			r.Handler, r.Time.Median, r.Time.P90, r.MedianRatioToRunc, r.Time.N, len(r.Failures))
		for _, p := range r.Phases {
			fmt.Fprintf(w, "      %-22s %-5s median %6.1f ms, p90 %6.1f ms\n", p.Name, p.Clock, p.Duration.Median, p.Duration.P90)
		}
		if r.Handler == "podvm" && len(r.Phases) == 0 {
			fmt.Fprintf(w, "      (no phases: the shims log each exec's steps at debug level only; run with --debug)\n")
		}
	}
}

func timeExec(ctx context.Context, h *benchhost.Host, p *benchhost.Pod) (call, error) {
	start := time.Now()
	err := h.ExecSync(ctx, p, command, execTimeout)
	return call{start: start, end: time.Now()}, err
}

// runs collects one handler's execs.
type runs struct {
	ms       []float64
	calls    []call
	failures []string
}

func (r *runs) add(c call, err error) {
	if err != nil {
		r.failures = append(r.failures, err.Error())
		return
	}
	r.ms = append(r.ms, result.Ms(c.end.Sub(c.start)))
	r.calls = append(r.calls, c)
}

func (r *runs) result(handler string) result.HandlerExec {
	return result.HandlerExec{HandlerTimes: result.HandlerTimes{Handler: handler, Runtime: benchhost.RuntimeName(handler),
		Time: stats.Summarize(r.ms), SamplesMs: r.ms, Failures: r.failures}}
}

// SetRatios compares every handler's execs with runc's.
func SetRatios(e *result.Exec) {
	var base stats.Summary
	for _, r := range e.Handlers {
		if r.Handler == "runc" {
			base = r.Time
		}
	}
	for i := range e.Handlers {
		e.Handlers[i].MedianRatioToRunc = stats.Ratio(e.Handlers[i].Time.Median, base.Median)
		e.Handlers[i].P90RatioToRunc = stats.Ratio(e.Handlers[i].Time.P90, base.P90)
	}
}
