// Package probe is the probe benchmark of `podvm bench startup`: HTTP GETs
// from the host to a pod's web server through the pod network, as the
// kubelet's HTTP probes reach a pod (a new connection each, no
// keep-alive) and each after an ICMP ping, first with the host idle, then while K other pods of the
// same handler start (load_boot) and busy-loop (load_busy). Each GET is
// split into its TCP handshake, which the pod's network path and kernel
// answer (as they answer the ping), and the whole response, which needs
// the server process to run.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// Options size the probes and their load.
type Options struct {
	// Requests is how many GETs the idle and the busy phase make.
	Requests int
	// Interval is the pause between one GET's end and the next.
	Interval time.Duration
	// LoadPods is how many busy-looping pods make the load.
	LoadPods int
	Progress io.Writer
}

const (
	// getTimeout bounds one GET: long enough to see how slow a slow one
	// is, where the kubelet would have given up after kubeletTimeout.
	getTimeout     = 10 * time.Second
	kubeletTimeout = time.Second
	podTimeout     = 5 * time.Minute
)

// busyLoop is the load pods' command: one CPU each, forever.
var busyLoop = []string{"sh", "-c", "while :; do :; done"}

// Run measures every handler of h, one after the other (a handler's load
// would disturb another's idle phase).
func Run(ctx context.Context, h *benchhost.Host, o Options) (*result.Probe, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	out := &result.Probe{Requests: o.Requests, IntervalMs: result.Ms(o.Interval), LoadPods: o.LoadPods,
		TimeoutMs: result.Ms(getTimeout), KubeletTimeoutMs: result.Ms(kubeletTimeout)}
	accel := h.VMAccelerator()
	var errs []error
	for _, handler := range h.Handlers {
		hp, err := runHandler(ctx, h, handler, o)
		if err != nil {
			hp.Failures = append(hp.Failures, err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", handler, err))
		}
		if benchhost.IsPodvm(handler) {
			hp.Accelerator = accel
		}
		out.Handlers = append(out.Handlers, hp)
	}
	SetRatios(out)
	for _, hp := range out.Handlers {
		for _, ph := range hp.Phases {
			fmt.Fprintf(o.Progress, "    probe %s, %s: GET median %.1f ms, p90 %.1f ms, max %.1f ms (ping median %.1f ms, connect median %.1f ms); %d over %s, %d failed, of %d\n",
				hp.Handler, ph.Name, ph.Response.Median, ph.Response.P90, ph.Response.Max, ph.Ping.Median, ph.Connect.Median,
				ph.OverKubeletTimeout, kubeletTimeout, len(ph.Failures), ph.Response.N+len(ph.Failures))
		}
	}
	return out, errors.Join(errs...)
}

// runHandler starts handler's web server pod, probes it idle, then under
// the load of o.LoadPods pods, and removes every pod it started.
func runHandler(ctx context.Context, h *benchhost.Host, handler string, o Options) (result.HandlerProbe, error) {
	hp := result.HandlerProbe{Handler: handler, Runtime: benchhost.RuntimeName(handler)}
	var (
		pods []*benchhost.Pod
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	defer func() {
		wg.Wait() // the load pods' starts, cancelled by then
		for _, p := range pods {
			h.RemovePod(context.WithoutCancel(ctx), p)
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	server, _, err := h.StartPodImage(sctx, handler, "probe-"+handler, benchhost.WebImage, nil, benchhost.WebServing)
	pods = append(pods, server)
	if err != nil {
		return hp, fmt.Errorf("web server pod: %w", err)
	}
	ip, err := h.PodIP(sctx, server)
	if err != nil {
		return hp, err
	}
	pg, err := newPinger(ip)
	if err != nil {
		return hp, err
	}
	defer pg.Close()
	g := newGetter("http://"+ip+":80/", pg)
	// Warm-up, not recorded. The server says it serves just before it
	// listens, so the first GET may be refused for a moment.
	if err := g.firstGet(sctx); err != nil {
		return hp, fmt.Errorf("first GET of %s: %w", ip, err)
	}
	hp.Phases = append(hp.Phases, g.phase(ctx, result.ProbeIdle, o.Requests, o.Interval, nil))

	// The load pods start together; probing goes on until all run.
	booted := make(chan struct{})
	var startErrs []error
	for i := 1; i <= o.LoadPods; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _, err := h.StartPod(sctx, handler, fmt.Sprintf("probe-load-%s-%d", handler, i), busyLoop, "")
			mu.Lock()
			defer mu.Unlock()
			pods = append(pods, p)
			if err != nil {
				startErrs = append(startErrs, err)
			}
		}()
	}
	go func() { wg.Wait(); close(booted) }()
	hp.Phases = append(hp.Phases, g.phase(ctx, result.ProbeLoadBoot, 0, o.Interval, booted))
	if err := errors.Join(startErrs...); err != nil {
		return hp, fmt.Errorf("load pods: %w", err)
	}
	hp.Phases = append(hp.Phases, g.phase(ctx, result.ProbeLoadBusy, o.Requests, o.Interval, nil))
	return hp, nil
}

// SetRatios compares every handler's GETs with runc's in the same phase.
func SetRatios(p *result.Probe) {
	base := map[string]result.ProbePhase{}
	for _, hp := range p.Handlers {
		if hp.Handler == "runc" {
			for _, ph := range hp.Phases {
				base[ph.Name] = ph
			}
		}
	}
	for i := range p.Handlers {
		for j := range p.Handlers[i].Phases {
			ph := &p.Handlers[i].Phases[j]
			b := base[ph.Name]
			ph.MedianRatioToRunc = stats.Ratio(ph.Response.Median, b.Response.Median)
			ph.P90RatioToRunc = stats.Ratio(ph.Response.P90, b.Response.P90)
		}
	}
}
