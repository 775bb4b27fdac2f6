// Package boot is `podvm bench boot`: the phases of one pod VM's start,
// measured on each run of `ctr run --rm` of a container that prints a
// line. Host timestamps come from the shim's "pod VM ready" and "container
// started" log lines and from the benchmark itself (ctr's start, the first
// byte on ctr's stdout, ctr's exit); guest timestamps come from the agent
// (GuestDetails: CLOCK_BOOTTIME when it started, when it served, and at its
// answer). It also times `ctr run --rm ... true` whole for podvm beside
// runc and, when installed, gVisor's runsc, in the same run.
package boot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// Options size the benchmark.
type Options struct {
	// Runs is how many pod VMs are booted for the phases.
	Runs int
	// RatioRuns is how many `ctr run --rm ... true` each handler gets.
	RatioRuns int
	Progress  io.Writer
}

// outputText is what the phase runs' container prints.
const outputText = "podvm-bench-boot"

// runTimeout bounds one `ctr run`.
const runTimeout = 3 * time.Minute

// Run boots Runs pod VMs one after another, then times `ctr run true` for
// every handler, interleaved. A warm-up run of each (not recorded) comes
// first, so that no figure includes a first-time cost (page cache, shim
// binary, containerd's lazily made state).
func Run(ctx context.Context, h *benchhost.Host, o Options) (*result.Boot, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	b := &result.Boot{Runs: o.Runs}
	if _, err := bootOnce(ctx, h, "podvm-boot-warmup"); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	for i := 1; i <= o.Runs; i++ {
		s, err := bootOnce(ctx, h, fmt.Sprintf("podvm-boot-%d", i))
		if err != nil {
			// What was measured is kept; the run stops here.
			summarize(b)
			return b, fmt.Errorf("boot run %d: %w", i, err)
		}
		b.Samples = append(b.Samples, s)
		fmt.Fprintf(o.Progress, "    boot %d/%d (%s): agent ready %.0f ms after the VMM's spawn, first output %.0f ms, ctr exited %.0f ms\n",
			i, o.Runs, s.Accelerator, s.Marks[MarkHostAgentReady]-s.Marks[MarkVMMSpawned], s.Marks[MarkFirstOutput], s.TotalMs)
	}
	summarize(b)

	runtimes := ctrRuntimes(h)
	times := make([][]float64, len(runtimes))
	fails := make([][]string, len(runtimes))
	for i := 0; i <= o.RatioRuns; i++ {
		for k := range runtimes {
			// Rotate the order, so no handler always follows another.
			j := (k + i) % len(runtimes)
			rt := runtimes[j]
			d, err := ctrRunTrue(ctx, h, rt, fmt.Sprintf("%s-true-%d", rt.handler, i))
			switch {
			case i == 0: // warm-up
			case err != nil:
				fails[j] = append(fails[j], err.Error())
			default:
				times[j] = append(times[j], result.Ms(d))
			}
		}
	}
	for j, rt := range runtimes {
		b.CtrRunTrue = append(b.CtrRunTrue, result.HandlerTimes{Handler: rt.handler, Runtime: rt.name,
			Time: stats.Summarize(times[j]), SamplesMs: times[j], Failures: fails[j]})
	}
	ratios(b.CtrRunTrue)
	for _, t := range b.CtrRunTrue {
		fmt.Fprintf(o.Progress, "    ctr run --rm true, %s: median %.0f ms (%d runs, %d failed), %.2fx runc\n",
			t.Runtime, t.Time.Median, t.Time.N, len(t.Failures), t.MedianRatioToRunc)
	}
	return b, nil
}

// bootOnce runs one podvm container that prints outputText and reads its
// start phases back from the shim's log lines.
func bootOnce(ctx context.Context, h *benchhost.Host, id string) (result.BootSample, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	h.Track(id)
	cmd := h.Ctr(ctx, "run", "--rm", "--runtime", h.Tools.Shim, "--runtime-config-path", h.PodvmConfig,
		benchhost.BusyboxImage, id, "echo", outputText)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return result.BootSample{}, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return result.BootSample{}, err
	}
	first, out, readErr := readTimed(stdout)
	werr := cmd.Wait()
	exited := time.Now()
	if werr != nil || readErr != nil {
		return result.BootSample{}, fmt.Errorf("ctr run %s: %v %v: %s", id, werr, readErr, strings.TrimSpace(stderr.String()))
	}
	if !strings.Contains(out, outputText) {
		return result.BootSample{}, fmt.Errorf("ctr run %s printed %q, not %q", id, out, outputText)
	}
	l, err := h.ShimLog()
	if err != nil {
		return result.BootSample{}, err
	}
	vm, ok := l.VMs[id]
	started, ok2 := l.ContainerStarted[id]
	if !ok || !ok2 {
		return result.BootSample{}, fmt.Errorf("the shim's start lines for %s are not in containerd's log %s (is the shim older than this podvm?)", id, h.LogPath())
	}
	s := sampleOf(t0, vm, started, first, exited, l.ContainerGuestMarks[id])
	addTeardownMarks(&s, t0, l.Teardowns[id])
	return s, nil
}

// readTimed reads r to its end and says when its first byte came.
func readTimed(r io.Reader) (first time.Time, all string, err error) {
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for {
		n, rerr := r.Read(chunk)
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		buf.Write(chunk[:n])
		if rerr == io.EOF {
			return first, buf.String(), nil
		}
		if rerr != nil {
			return first, buf.String(), rerr
		}
	}
}

// ctrRuntime is how `ctr run` selects a handler's runtime.
type ctrRuntime struct {
	handler, name string
	args          []string
}

func ctrRuntimes(h *benchhost.Host) []ctrRuntime {
	out := []ctrRuntime{
		{"runc", "runc", []string{"--runtime", "io.containerd.runc.v2", "--runc-binary", h.Tools.Runc, "--runc-root", benchhost.RuncRoot(h.Dir)}},
	}
	for _, handler := range h.PodvmHandlers() {
		out = append(out, ctrRuntime{handler, handler, []string{"--runtime", h.Tools.Shim, "--runtime-config-path", h.PodvmConfigs[handler]}})
	}
	if h.Tools.Runsc != "" {
		out = append(out, ctrRuntime{"runsc", benchhost.RuntimeName("runsc"),
			[]string{"--runtime", "io.containerd.runc.v2", "--runc-binary", h.Tools.Runsc, "--runc-root", benchhost.RuncRoot(h.Dir)}})
	}
	return out
}

// ctrRunTrue times `ctr run --rm IMAGE ID true`, whole.
func ctrRunTrue(ctx context.Context, h *benchhost.Host, rt ctrRuntime, id string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	h.Track(id)
	args := append(append([]string{"run", "--rm"}, rt.args...), benchhost.BusyboxImage, id, "true")
	cmd := h.Ctr(ctx, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if werr := h.WaitCacheRefilled(ctx, rt.handler); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return 0, fmt.Errorf("ctr run (%s) %s: %v: %s", rt.name, id, err, strings.TrimSpace(string(out)))
	}
	return d, nil
}
