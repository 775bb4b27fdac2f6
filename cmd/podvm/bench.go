package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/boot"
	"github.com/podvm/podvm/bench/density"
	"github.com/podvm/podvm/bench/execsync"
	"github.com/podvm/podvm/bench/probe"
	"github.com/podvm/podvm/bench/report"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/startup"
	"github.com/podvm/podvm/bench/suite"
)

// benchFlags are the options every benchmark command shares.
type benchFlags struct {
	prefix, cache, out, runsc, testbin string
	debug, keep                        bool

	bootRuns, ratioRuns  int
	serialRuns, parallel int
	densityPods          int
	densitySettle        time.Duration
	densityHandlersPodvm bool
	cacheSize            int
	factoryModes         []string

	execRuns                 int
	probeRequests, probeLoad int
	probeInterval            time.Duration
}

// benchParts are the benchmarks one command runs.
type benchParts struct{ boot, startup, exec, probe, density bool }

func newBenchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure pod VM boot, pod startup and density, side by side with runc (and gVisor)",
		Long: `Runs podvm's benchmarks on a private containerd (CRI with the runc handler and
a podvm handler per factory mode: podvm for none, podvm-template; runsc through
ctr when installed), its own pod network and a local image registry, then
removes everything it started and checks that nothing was left. A template
mode's first pod, which saves the VM template, is timed before every benchmark.

  boot     the phases of one pod VM's start (shim, VMM spawn, guest kernel entry,
           agent ready, container started, first output), and 'ctr run --rm true'
           for every handler
  startup  pod sandbox + container through CRI to first output, one at a time
           and N at once, per handler, as times and as ratios to runc; then
           exec and probe
  exec     CRI ExecSync of 'true' in a running pod, per handler
  probe    HTTP GETs from the host into a pod through the pod network, idle
           and while other pods of its handler start and busy-loop
  density  idle pods until N (or the first failure), with each pod's host memory
  all      every one in one run

Writes results.json (schema: docs/benchmarks.md), PNG plots and summary.md to
--out. Needs root. Targets are reported, never asserted.`,
	}
	pf := cmd.PersistentFlags()
	prefix := os.Getenv("PODVM_PREFIX")
	if prefix == "" {
		prefix = "/opt/podvm"
	}
	cache := os.Getenv("PODVM_CACHE")
	if cache == "" {
		cache = "/var/cache/podvm"
	}
	pf.StringVar(&f.prefix, "prefix", prefix, "podvm install to measure (bin/containerd-shim-podvm-v2, share/podvm/config.toml); $PODVM_PREFIX")
	pf.StringVar(&f.cache, "cache", cache, "tool cache of ci/install-tools.sh (containerd, runc, gVisor); $PODVM_CACHE")
	pf.StringVar(&f.out, "out", "bench-results", "directory for results.json, the plots and summary.md")
	pf.StringVar(&f.runsc, "runsc", "", `gVisor's runsc: "" uses the cached build if there is one, "none" skips gVisor`)
	pf.StringVar(&f.testbin, "testbin", "", "the test images' program (make spec-binary builds it); empty: built with go")
	pf.BoolVar(&f.debug, "debug", false, "run containerd and the shims at debug log level")
	pf.BoolVar(&f.keep, "keep", false, "keep the work directory (containerd's log, configs, pod logs)")
	pf.IntVar(&f.bootRuns, "boot-runs", 10, "boot: pod VMs booted for the phases")
	pf.IntVar(&f.ratioRuns, "ratio-runs", 10, "boot: 'ctr run --rm true' runs per handler")
	pf.IntVar(&f.serialRuns, "serial-runs", 10, "startup: pods per handler, one at a time")
	pf.IntVar(&f.parallel, "parallel", 10, "startup: pods per handler started at once (0: none)")
	pf.IntVar(&f.densityPods, "pods", 25, "density: idle pods per handler")
	pf.DurationVar(&f.densitySettle, "settle", 10*time.Second, "density: idle time before the last measurement")
	pf.BoolVar(&f.densityHandlersPodvm, "density-podvm-only", false, "density: measure the podvm handlers only, every factory mode (not runc)")
	pf.StringSliceVar(&f.factoryModes, "factory-modes", benchhost.DefaultFactoryModes,
		"podvm factory modes measured side by side, each as a CRI handler of its own (podvm for none, podvm-MODE): none, template, cache (the bench host runs podvm factory serve for it)")
	pf.IntVar(&f.cacheSize, "cache-size", benchhost.DefaultCacheSize, "cache mode: VMs its pool keeps booted (each measurement starts with a full pool)")
	pf.IntVar(&f.execRuns, "exec-runs", 10, "exec: ExecSync of true per handler")
	pf.IntVar(&f.probeRequests, "probe-requests", 20, "probe: HTTP GETs per handler, idle and again under load")
	pf.IntVar(&f.probeLoad, "probe-load", 4, "probe: busy-looping pods of the same handler that make the load")
	pf.DurationVar(&f.probeInterval, "probe-interval", 100*time.Millisecond, "probe: pause between GETs")

	run := func(parts benchParts) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error { return f.run(cmd, parts) }
	}
	cmd.AddCommand(
		&cobra.Command{Use: "all", Short: "Run boot, startup (with exec and probe) and density in one run", Args: cobra.NoArgs,
			RunE: run(benchParts{boot: true, startup: true, exec: true, probe: true, density: true})},
		&cobra.Command{Use: "boot", Short: "Pod VM start phases, and ctr run true per handler", Args: cobra.NoArgs, RunE: run(benchParts{boot: true})},
		&cobra.Command{Use: "startup", Short: "Pod + container through CRI to first output, serial and parallel; exec; probe", Args: cobra.NoArgs,
			RunE: run(benchParts{startup: true, exec: true, probe: true})},
		&cobra.Command{Use: "exec", Short: "CRI ExecSync of true in a running pod, per handler", Args: cobra.NoArgs, RunE: run(benchParts{exec: true})},
		&cobra.Command{Use: "probe", Short: "HTTP probes into a pod, idle and under load, per handler", Args: cobra.NoArgs, RunE: run(benchParts{probe: true})},
		&cobra.Command{Use: "density", Short: "Idle pods until N or failure, with host memory per pod", Args: cobra.NoArgs, RunE: run(benchParts{density: true})},
		newBenchReportCommand(),
	)
	return cmd
}

func (f *benchFlags) run(cmd *cobra.Command, parts benchParts) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tools, err := benchhost.FindTools(f.prefix, f.cache, f.runsc, f.testbin)
	if err != nil {
		return prerequisite(err)
	}
	o := suite.Options{
		Host: benchhost.Options{Tools: tools, Debug: f.debug, Keep: f.keep, Progress: cmd.ErrOrStderr(),
			FactoryModes: f.factoryModes, CacheSize: f.cacheSize},
		OutDir: f.out,
	}
	if parts.boot {
		o.Boot = &boot.Options{Runs: f.bootRuns, RatioRuns: f.ratioRuns}
	}
	if parts.startup {
		o.Startup = &startup.Options{SerialRuns: f.serialRuns, Parallel: f.parallel}
	}
	if parts.exec {
		o.Exec = &execsync.Options{Runs: f.execRuns}
	}
	if parts.probe {
		o.Probe = &probe.Options{Requests: f.probeRequests, Interval: f.probeInterval, LoadPods: f.probeLoad}
	}
	if parts.density {
		o.Density = &density.Options{Pods: f.densityPods, Settle: f.densitySettle}
		if f.densityHandlersPodvm {
			o.Density.Handlers = podvmHandlers(f.factoryModes)
		}
	}
	res, err := suite.Run(ctx, o)
	if res != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "results: %s\n", filepath.Join(f.out, "results.json"))
		fmt.Fprintf(cmd.OutOrStdout(), "summary: %s\n", filepath.Join(f.out, "summary.md"))
		for _, t := range res.Targets {
			fmt.Fprintf(cmd.OutOrStdout(), "  %-12s %s: %s\n", t.Status, t.Name, t.Measured)
		}
	}
	return err
}

func newBenchReportCommand() *cobra.Command {
	var in, out string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write the plots and summary.md again from a results.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := result.Read(in)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Dir(in)
			}
			res.Targets = report.Targets(res)
			return report.Write(out, res)
		},
	}
	cmd.Flags().StringVar(&in, "in", "bench-results/results.json", "results to report on")
	cmd.Flags().StringVar(&out, "out", "", "directory to write to (default: the one --in is in)")
	return cmd
}

// podvmHandlers are the CRI handlers of the podvm factory modes.
func podvmHandlers(modes []string) []string {
	var out []string
	for _, m := range modes {
		out = append(out, benchhost.PodvmHandler(m))
	}
	return out
}
