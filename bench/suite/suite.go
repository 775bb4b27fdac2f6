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
	fmt.Fprintf(progress, "==> %s, %d CPUs, %.0f MiB; pod VMs: %s (%s)\n", res.Host.CPUModel, res.Host.CPUs,
		res.Host.MemoryMiB, res.Host.Accelerator, res.Host.AcceleratorReason)

	var errs []error
	if o.Boot != nil && ctx.Err() == nil {
		fmt.Fprintf(progress, "==> boot: %d pod VMs, then ctr run true x%d per handler\n", o.Boot.Runs, o.Boot.RatioRuns)
		o.Boot.Progress = progress
		b, err := boot.Run(ctx, h, *o.Boot)
		res.Boot = b
		if err != nil {
			errs = append(errs, fmt.Errorf("boot: %w", err))
		}
	}
	if o.Startup != nil && ctx.Err() == nil {
		fmt.Fprintf(progress, "==> startup: %d pods one by one, then %d at once, per handler\n", o.Startup.SerialRuns, o.Startup.Parallel)
		o.Startup.Progress = progress
		s, err := startup.Run(ctx, h, *o.Startup)
		res.Startup = s
		if err != nil {
			errs = append(errs, fmt.Errorf("startup: %w", err))
		}
	}
	if o.Exec != nil && ctx.Err() == nil {
		fmt.Fprintf(progress, "==> exec: one pod per handler, then ExecSync true x%d per handler\n", o.Exec.Runs)
		o.Exec.Progress = progress
		e, err := execsync.Run(ctx, h, *o.Exec)
		res.Exec = e
		if err != nil {
			errs = append(errs, fmt.Errorf("exec: %w", err))
		}
	}
	if o.Probe != nil && ctx.Err() == nil {
		fmt.Fprintf(progress, "==> probe: HTTP GET x%d into a pod, idle, then while %d pods of its handler start and busy-loop\n",
			o.Probe.Requests, o.Probe.LoadPods)
		o.Probe.Progress = progress
		p, err := probe.Run(ctx, h, *o.Probe)
		res.Probe = p
		if err != nil {
			errs = append(errs, fmt.Errorf("probe: %w", err))
		}
	}
	if o.Density != nil && ctx.Err() == nil {
		fmt.Fprintf(progress, "==> density: up to %d idle pods per handler\n", o.Density.Pods)
		o.Density.Progress = progress
		d, err := density.Run(ctx, h, *o.Density)
		res.Density = d
		if err != nil {
			errs = append(errs, fmt.Errorf("density: %w", err))
		}
	}
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
