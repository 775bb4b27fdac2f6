// Package suite runs the chosen benchmarks on one bench host and writes
// their results: results.json (bench/result's schema), PNG plots and a
// Markdown summary (bench/report). The host is always closed and checked
// for leaks, also when a benchmark fails or the run is interrupted.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/boot"
	"github.com/podvm/podvm/bench/density"
	"github.com/podvm/podvm/bench/execsync"
	"github.com/podvm/podvm/bench/probe"
	"github.com/podvm/podvm/bench/report"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/startup"
)

// Options choose and size the benchmarks.
type Options struct {
	Host benchhost.Options
	// OutDir receives results.json, the plots and summary.md.
	OutDir string

	Boot    *boot.Options
	Startup *startup.Options
	Density *density.Options
	Exec    *execsync.Options
	Probe   *probe.Options
}

// Run runs the benchmarks chosen in o (a nil Options skips one) and writes
// what they measured, even if one failed; the error says what failed and
// whether anything was left behind.
func Run(ctx context.Context, o Options) (*result.Results, error) {
	progress := o.Host.Progress
	if progress == nil {
		progress = io.Discard
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	res := &result.Results{Schema: result.Schema, StartedAt: time.Now().UTC(), Leaks: []string{}}
	h, err := benchhost.Start(ctx, o.Host)
	if err != nil {
		return nil, err
	}
	res.Host = h.Describe()
	res.Factory = factoryOf(h)
	fmt.Fprintf(progress, "==> %s, %d CPUs, %.0f MiB; pod VMs: %s (%s)\n", res.Host.CPUModel, res.Host.CPUs,
		res.Host.MemoryMiB, res.Host.Accelerator, res.Host.AcceleratorReason)

	errs := runBenchmarks(ctx, h, o, res, progress)
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	fmt.Fprintf(progress, "==> removing every pod and stopping the host\n")
	res.Leaks = append(res.Leaks, h.Close(context.WithoutCancel(ctx))...)
	if len(res.Leaks) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(res.Leaks, "; ")))
	}
	res.FinishedAt = time.Now().UTC()
	res.Targets = report.Targets(res)
	if err := report.Write(o.OutDir, res); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// runBenchmarks runs each benchmark chosen in o, in order, until ctx
// ends, and puts what each measured into res.
func runBenchmarks(ctx context.Context, h *benchhost.Host, o Options, res *result.Results, progress io.Writer) []error {
	var errs []error
	step := func(name, header string, run func() error) {
		if ctx.Err() != nil {
			return
		}
		fmt.Fprintf(progress, "==> %s: %s\n", name, header)
		if err := run(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if b := o.Boot; b != nil {
		b.Progress = progress
		step("boot", fmt.Sprintf("%d pod VMs, then ctr run true x%d per handler", b.Runs, b.RatioRuns), func() (err error) { res.Boot, err = boot.Run(ctx, h, *b); return err })
	}
	if s := o.Startup; s != nil {
		s.Progress = progress
		step("startup", fmt.Sprintf("%d pods one by one, then %d at once, per handler", s.SerialRuns, s.Parallel), func() (err error) { res.Startup, err = startup.Run(ctx, h, *s); return err })
	}
	if e := o.Exec; e != nil {
		e.Progress = progress
		step("exec", fmt.Sprintf("one pod per handler, then ExecSync true x%d per handler", e.Runs), func() (err error) { res.Exec, err = execsync.Run(ctx, h, *e); return err })
	}
	if p := o.Probe; p != nil {
		p.Progress = progress
		step("probe", fmt.Sprintf("HTTP GET x%d into a pod, idle, then while %d pods of its handler start and busy-loop",
			p.Requests, p.LoadPods), func() (err error) { res.Probe, err = probe.Run(ctx, h, *p); return err })
	}
	if d := o.Density; d != nil {
		d.Progress = progress
		step("density", fmt.Sprintf("up to %d idle pods per handler", d.Pods), func() (err error) { res.Density, err = density.Run(ctx, h, *d); return err })
	}
	return errs
}

// factoryOf is the factory modes h measures and their first pods.
func factoryOf(h *benchhost.Host) *result.Factory {
	f := &result.Factory{Handlers: map[string]string{}, FirstPods: []result.FirstPod{}}
	for _, handler := range h.PodvmHandlers() {
		f.Handlers[handler] = benchhost.FactoryMode(handler)
	}
	for _, p := range h.FirstPods {
		fp := result.FirstPod{Handler: p.Handler, ToFirstOutputMs: result.Ms(p.Times.Total)}
		if p.Err != nil {
			fp.Error = p.Err.Error()
		}
		f.FirstPods = append(f.FirstPods, fp)
	}
	return f
}
