// Package startup is `podvm bench startup`: a pod sandbox and one container
// through CRI (RunPodSandbox, CreateContainer, StartContainer) until the
// container's output is in its CRI log, as the kubelet would start a pod,
// for every handler in the same run: pods one at a time (handlers
// interleaved), then N pods at once per handler. Times are reported as
// such and as podvm's ratio to runc's.
package startup

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/cpuuse"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// Options size the benchmark.
type Options struct {
	// SerialRuns is how many pods each handler starts one at a time.
	SerialRuns int
	// Parallel is how many pods each handler starts at once.
	Parallel int
	Progress io.Writer
}

// outputText is what each container prints.
const outputText = "podvm-bench-startup"

// podTimeout bounds one pod's start; a parallel batch gets it too.
const podTimeout = 5 * time.Minute

// Run measures every handler of h.
func Run(ctx context.Context, h *benchhost.Host, o Options) (*result.Startup, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	out := &result.Startup{}
	cmd := []string{"echo", outputText}
	// Warm-up, not recorded: one pod per handler.
	for _, handler := range h.Handlers {
		if _, _, _, err := startAndRemove(ctx, h, handler, "warmup-"+handler, cmd, nil); err != nil {
			return nil, fmt.Errorf("warm-up pod (%s): %w", handler, err)
		}
	}
	serial := map[string]*serialRuns{}
	for _, handler := range h.Handlers {
		serial[handler] = &serialRuns{cpu: newCPUWindows(h)}
	}
	for i := 1; i <= o.SerialRuns; i++ {
		for k := range h.Handlers {
			handler := h.Handlers[(k+i)%len(h.Handlers)]
			id, app, t, err := startAndRemove(ctx, h, handler, fmt.Sprintf("serial-%s-%d", handler, i), cmd, serial[handler].cpu)
			serial[handler].add(id, app, t, err)
			if err != nil {
				fmt.Fprintf(o.Progress, "    serial %s %d: %v\n", handler, i, err)
			}
		}
	}
	for _, handler := range h.Handlers {
		r := serial[handler].result(handler)
		r.VMs = vmStarts(h, handler, serial[handler].ids, serial[handler].apps)
		r.CPU, r.Steps = serial[handler].cpu.result(), hostSteps(serial[handler].pods, h)
		out.Serial = append(out.Serial, r)
		fmt.Fprintf(o.Progress, "    serial, %s: median %.0f ms, p90 %.0f ms (%d pods, %d failed)\n",
			handler, r.ToFirstOutput.Median, r.ToFirstOutput.P90, r.ToFirstOutput.N, len(r.Failures))
		printCreates(o.Progress, r.VMs)
		printCPU(o.Progress, r.CPU)
	}
	if o.Parallel > 0 {
		for _, handler := range h.Handlers {
			p, pods := parallel(ctx, h, handler, o.Parallel, cmd)
			ids, apps := podIDs(pods)
			p.VMs = vmStarts(h, handler, ids, apps)
			p.Steps = hostSteps(pods, h)
			out.Parallel = append(out.Parallel, p)
			fmt.Fprintf(o.Progress, "    %d at once, %s: all out in %.0f ms, each median %.0f ms p90 %.0f ms (%d failed)\n",
				o.Parallel, handler, p.WallMs, p.ToFirstOutput.Median, p.ToFirstOutput.P90, len(p.Failures))
			printCPU(o.Progress, p.CPU)
		}
	}
	setRatios(out)
	setAccelerators(h, out)
	return out, nil
}

// startAndRemove starts a pod, waits for its output, and removes it (the
// removal is not timed); cpu, if set, gets the host's CPU time of the
// start.
func startAndRemove(ctx context.Context, h *benchhost.Host, handler, name string, cmd []string, cpu *cpuWindows) (id, app string, _ benchhost.PodTimes, _ error) {
	sctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	var before *cpuuse.Snapshot
	if cpu != nil {
		before = cpu.begin()
	}
	p, t, err := h.StartPod(sctx, handler, name, cmd, outputText)
	if cpu != nil && err == nil {
		cpu.end(before, 1)
	}
	if p != nil {
		id, app = p.ID, p.ContainerID
	}
	if rerr := h.RemovePod(context.WithoutCancel(ctx), p); rerr != nil && err == nil {
		err = rerr
	}
	return id, app, t, err
}

// serialRuns collects one handler's serial pods.
type serialRuns struct {
	total, runp, create, start, output []float64
	failures                           []string
	ids, apps                          []string
	pods                               []started // those that started
	cpu                                *cpuWindows
}

func (s *serialRuns) add(id, app string, t benchhost.PodTimes, err error) {
	if id != "" {
		s.ids = append(s.ids, id)
	}
	if app != "" {
		s.apps = append(s.apps, app)
	}
	if err != nil {
		s.failures = append(s.failures, err.Error())
		return
	}
	s.pods = append(s.pods, started{id: id, app: app, t: t})
	s.total = append(s.total, result.Ms(t.Total))
	s.runp = append(s.runp, result.Ms(t.RunPodSandbox))
	s.create = append(s.create, result.Ms(t.CreateContainer))
	s.start = append(s.start, result.Ms(t.StartContainer))
	s.output = append(s.output, result.Ms(t.Output))
}

func (s *serialRuns) result(handler string) result.HandlerStartup {
	return result.HandlerStartup{
		Handler: handler, Runtime: benchhost.RuntimeName(handler), Runs: len(s.total) + len(s.failures),
		ToFirstOutput: stats.Summarize(s.total), RunPodSandbox: stats.Summarize(s.runp),
		CreateContainer: stats.Summarize(s.create), StartContainer: stats.Summarize(s.start),
		Output: stats.Summarize(s.output), SamplesMs: s.total, Failures: s.failures,
	}
}

// parallel starts n pods of handler at once and removes them after; it
// returns the pods too, with their times.
func parallel(ctx context.Context, h *benchhost.Host, handler string, n int, cmd []string) (result.HandlerParallel, []started) {
	out := result.HandlerParallel{Handler: handler, Runtime: benchhost.RuntimeName(handler), Pods: n}
	pctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		pods []*benchhost.Pod
		all  []started
	)
	cpu := newCPUWindows(h)
	before := cpu.begin()
	start := time.Now()
	var last time.Time
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, t, err := h.StartPod(pctx, handler, fmt.Sprintf("parallel-%s-%d", handler, i), cmd, outputText)
			done := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if p != nil {
				pods = append(pods, p)
				all = append(all, started{id: p.ID, app: p.ContainerID, t: t, failed: err != nil})
			}
			if err != nil {
				out.Failures = append(out.Failures, err.Error())
				return
			}
			out.SamplesMs = append(out.SamplesMs, result.Ms(t.Total))
			if done.After(last) {
				last = done
			}
		}()
	}
	wg.Wait()
	if len(out.Failures) == 0 {
		out.WallMs = result.Ms(last.Sub(start))
		cpu.end(before, n)
		out.CPU = cpu.result()
	}
	out.ToFirstOutput = stats.Summarize(out.SamplesMs)
	// Removed one after another: the removal is not measured, and a
	// host full of exiting VMs would only slow the next batch.
	for _, p := range pods {
		if err := h.RemovePod(context.WithoutCancel(ctx), p); err != nil {
			out.Failures = append(out.Failures, err.Error())
		}
	}
	return out, all
}

// podIDs are the pods' sandbox and app container ids.
func podIDs(pods []started) (ids, apps []string) {
	for _, p := range pods {
		ids = append(ids, p.id)
		if p.app != "" {
			apps = append(apps, p.app)
		}
	}
	return ids, apps
}

// printCreates prints the guest's create + start of a podvm handler's
// pause and app containers.
func printCreates(w io.Writer, v *result.PodVMStarts) {
	if v == nil {
		return
	}
	for _, c := range v.Creates {
		fmt.Fprintf(w, "      guest create + start, %s container: median %.0f ms (OCI create %.0f ms; %d VMs)\n",
			c.Container, c.CreateStart.Median, c.OCICreate.Median, c.CreateStart.N)
	}
}

// setRatios compares every handler with runc.
func setRatios(s *result.Startup) {
	var serialBase, wallBase, parBase float64
	for _, r := range s.Serial {
		if r.Handler == "runc" {
			serialBase = r.ToFirstOutput.Median
		}
	}
	for _, p := range s.Parallel {
		if p.Handler == "runc" {
			wallBase, parBase = p.WallMs, p.ToFirstOutput.Median
		}
	}
	for i := range s.Serial {
		s.Serial[i].MedianRatioToRunc = stats.Ratio(s.Serial[i].ToFirstOutput.Median, serialBase)
	}
	for i := range s.Parallel {
		s.Parallel[i].WallRatioToRunc = stats.Ratio(s.Parallel[i].WallMs, wallBase)
		s.Parallel[i].MedianRatioToRunc = stats.Ratio(s.Parallel[i].ToFirstOutput.Median, parBase)
	}
}

// setAccelerators records which accelerator podvm's VMs ran with, from
// the shim's log.
func setAccelerators(h *benchhost.Host, s *result.Startup) {
	accel := h.VMAccelerator()
	for i := range s.Serial {
		if benchhost.IsPodvm(s.Serial[i].Handler) {
			s.Serial[i].Accelerator = accel
		}
	}
	for i := range s.Parallel {
		if benchhost.IsPodvm(s.Parallel[i].Handler) {
			s.Parallel[i].Accelerator = accel
		}
	}
}
