// Package conformance is the harness behind `make conformance`: against a
// cluster from a cluster.Provider it runs podvm's executable isolation
// specs (spec/) once per runtime class, the upstream Kubernetes e2e
// RuntimeClass specs, critest with each CRI handler and, when asked, the
// upstream node conformance specs once per runtime class, then writes a
// report (Markdown and JUnit) whose verdict is that every result is the
// expected one: isolation specs fail on every shared-kernel baseline for
// the fact each declares (which proves they can fail) and pass on every VM
// runtime class.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/report"
	"github.com/podvm/podvm/internal/estimate"
)

// Options configures one conformance run.
type Options struct {
	Cluster     *cluster.Cluster
	ClusterDesc string
	// Classes are the runtime classes the specs run against, in order.
	// Baselines are the shared-kernel references among them ("runc", the
	// fake VM "runc-fakevm"): every isolation spec must fail on each.
	Classes   []string
	Baselines []string
	OutDir    string

	// SpecBinary is the compiled spec suite (cd spec && go test -c).
	SpecBinary string
	// SpecLabelFilter narrows the specs (Ginkgo label filter), "" for all.
	SpecLabelFilter string
	// SpecArgs are passed to every spec run (e.g. --vmm-process-regex).
	SpecArgs []string

	// E2EBinary is Kubernetes' e2e.test; "" skips the upstream suite.
	E2EBinary string
	// E2EFocus selects the upstream specs.
	E2EFocus string

	// CritestCommand runs critest with every handler against a CRI
	// runtime and exits non-zero when podvm differs from runc beyond the
	// documented list; it writes <dir>/<handler>/junit.xml into the
	// directory in $PODVM_CRITEST_REPORTS. Empty skips critest.
	CritestCommand []string
	CritestDir     string // working directory of CritestCommand
	CritestEnv     []string

	// Suites are the suites to run (Suite* names); nil runs DefaultSuites.
	Suites []string
	// NodeClasses are the runtime classes the upstream node conformance
	// specs run with; the first is the baseline the others are compared
	// with. NodeFocus and NodeSkip select the specs; Kubectl installs the
	// admission policy that puts their pods on each class.
	NodeClasses         []string
	NodeFocus, NodeSkip string
	Kubectl             string
	// NodeProcs > 1 runs the node specs in that many parallel processes
	// through Ginkgo, the Ginkgo CLI of the version compiled into E2EBinary.
	NodeProcs int
	Ginkgo    string

	// Progress receives one line per step.
	Progress io.Writer
}

// DefaultE2EFocus selects the upstream RuntimeClass specs, including the
// [Feature:RuntimeHandler] ones that need the test-handler handler.
const DefaultE2EFocus = `RuntimeClass`

// The suites a run can select.
const (
	SuiteIsolation       = "isolation"
	SuiteRuntimeClassE2E = "runtimeclass-e2e"
	SuiteCritest         = "critest"
	SuiteNodeConformance = "node-conformance"
)

// AllSuites are every suite, in the order they run.
var AllSuites = []string{SuiteIsolation, SuiteRuntimeClassE2E, SuiteCritest, SuiteNodeConformance}

// DefaultSuites are what `make conformance` runs: the node conformance
// suite takes more than an hour here (docs/conformance.md) and is asked for by
// name.
var DefaultSuites = []string{SuiteIsolation, SuiteRuntimeClassE2E, SuiteCritest}

// CheckSuites checks that every name is a suite.
func CheckSuites(names []string) error {
	for _, n := range names {
		if !slices.Contains(AllSuites, n) {
			return fmt.Errorf("%w: unknown suite %q (suites: %s)", report.ErrUsage, n, strings.Join(AllSuites, ", "))
		}
	}
	return nil
}

func (o Options) runs(suite string) bool {
	if o.Suites == nil {
		return slices.Contains(DefaultSuites, suite)
	}
	return slices.Contains(o.Suites, suite)
}

// Run runs every suite and returns the report; the report is also written
// to OutDir as report.md and junit.xml. An error means the harness itself
// failed; failing specs are in the report.
func Run(ctx context.Context, o Options) (*report.Report, error) {
	if err := CheckSuites(o.Suites); err != nil {
		return nil, err
	}
	if o.runs(SuiteIsolation) {
		if err := report.CheckClasses(o.Classes, o.Baselines); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	classes := o.Classes
	if !o.runs(SuiteIsolation) && o.runs(SuiteNodeConformance) {
		classes = o.NodeClasses
	}
	rep := &report.Report{Title: "podvm conformance report", Cluster: o.ClusterDesc, Classes: classes, Started: time.Now()}
	progress := func(format string, a ...any) { fmt.Fprintf(o.Progress, "==> "+format+"\n", a...) }

	for _, class := range o.Classes {
		if !o.runs(SuiteIsolation) {
			break
		}
		progress("isolation specs with runtime class %q", class)
		run := runSpecs(ctx, o, class)
		progress("   %s", summary(run))
		rep.Runs = append(rep.Runs, run)
	}
	if o.E2EBinary != "" && o.runs(SuiteRuntimeClassE2E) {
		progress("upstream Kubernetes e2e: %s", o.E2EFocus)
		run := runE2E(ctx, o)
		progress("   %s", summary(run))
		rep.Runs = append(rep.Runs, run)
	}
	if len(o.CritestCommand) > 0 && o.runs(SuiteCritest) {
		progress("critest with every handler (%s)", estimate.Critest.About())
		runs := runCritest(ctx, o)
		for _, r := range runs {
			progress("   %s: %s", r.RuntimeClass, summary(r))
		}
		rep.Runs = append(rep.Runs, runs...)
	}
	if o.runs(SuiteNodeConformance) {
		runs, cmp := runNodeSuite(ctx, o, progress)
		rep.Runs = append(rep.Runs, runs...)
		rep.Comparisons = append(rep.Comparisons, cmp)
	}
	rep.Elapsed = time.Since(rep.Started)
	if err := WriteReport(rep, o.OutDir); err != nil {
		return rep, err
	}
	return rep, nil
}

// WriteReport writes report.md and junit.xml into dir, and origin.json
// (each factory class's pod VMs per spec) when there are any.
func WriteReport(rep *report.Report, dir string) error {
	if err := writeFile(dir, "report.md", rep.WriteMarkdown); err != nil {
		return err
	}
	if err := writeFile(dir, "junit.xml", rep.WriteJUnit); err != nil || !rep.HasOrigins() {
		return err
	}
	return writeFile(dir, "origin.json", rep.WriteOriginJSON)
}

// writeFile creates dir/name and fills it with write.
func writeFile(dir, name string, write func(io.Writer) error) error {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func summary(r report.Run) string {
	if r.Err != nil {
		return "did not complete: " + r.Err.Error()
	}
	n := map[report.Outcome]int{}
	for _, c := range r.Cases {
		n[c.Outcome]++
	}
	s := fmt.Sprintf("%d passed, %d failed, %d skipped in %s", n[report.Passed], n[report.Failed], n[report.Skipped], r.Duration.Round(time.Second))
	if r.Checked != nil {
		s += "; check: " + r.Checked.Detail
	}
	return s
}

// runE2E runs the upstream e2e specs once: they test the RuntimeClass API
// and handler plumbing, not one class.
func runE2E(ctx context.Context, o Options) report.Run {
	dir := filepath.Join(o.OutDir, "e2e")
	run := report.Run{Suite: "upstream Kubernetes e2e (" + o.E2EFocus + ")", Log: filepath.Join(dir, "e2e.log")}
	junit := filepath.Join(dir, "junit_01.xml")
	args := []string{"--kubeconfig", o.Cluster.Kubeconfig, "--provider", "skeleton",
		"--ginkgo.focus", o.E2EFocus, "--ginkgo.no-color", "--ginkgo.v", "--ginkgo.timeout", "1h",
		"--ginkgo.junit-report", junit, "--report-dir", dir, "--dump-logs-on-failure=false"}
	start := time.Now()
	err := runLogged(ctx, dir, run.Log, nil, o.E2EBinary, args...)
	run.Duration = time.Since(start)
	run.Cases, run.Err = readCases(junit, err, run.Log)
	run.Cases = withoutUnselected(run.Cases)
	return run
}

// withoutUnselected drops the specs Ginkgo did not select: its JUnit lists
// every spec of the suite, the ones outside the focus as skipped with the
// bare message "skipped". A spec that ran and skipped itself says why.
func withoutUnselected(cases []report.Case) []report.Case {
	var out []report.Case
	for _, c := range cases {
		if c.Outcome == report.Skipped && (c.Message == "" || c.Message == "skipped") {
			continue
		}
		out = append(out, c)
	}
	return out
}

// runCritest runs the critest command once; its exit status is the check
// of every handler's run (podvm differs from runc only as documented).
func runCritest(ctx context.Context, o Options) []report.Run {
	dir := filepath.Join(o.OutDir, "critest")
	log := filepath.Join(dir, "critest-command.log")
	start := time.Now()
	env := append(append([]string{}, o.CritestEnv...), "PODVM_CRITEST_REPORTS="+dir)
	cmdErr := runLoggedIn(ctx, o.CritestDir, dir, log, env, o.CritestCommand[0], o.CritestCommand[1:]...)
	elapsed := time.Since(start)
	check := &report.Check{OK: cmdErr == nil, Detail: "podvm differs from runc only as docs/critest.md lists"}
	if cmdErr != nil {
		check.Detail = fmt.Sprintf("%s: %v (log %s)", strings.Join(o.CritestCommand, " "), cmdErr, log)
	}
	handlers, _ := os.ReadDir(dir)
	var runs []report.Run
	for _, h := range handlers {
		junit := filepath.Join(dir, h.Name(), "junit.xml")
		if _, err := os.Stat(junit); err != nil {
			continue
		}
		r := report.Run{Suite: "critest (cri-tools v1.37.0)", RuntimeClass: h.Name(), Log: log, Duration: elapsed, Checked: check}
		r.Cases, r.Err = report.ReadJUnit(junit)
		runs = append(runs, r)
	}
	if len(runs) == 0 {
		runs = append(runs, report.Run{Suite: "critest (cri-tools v1.37.0)", Log: log, Duration: elapsed, Checked: check,
			Err: fmt.Errorf("no critest report in %s: %v", dir, cmdErr)})
	}
	return runs
}

// readCases reads a suite's JUnit report. A suite that exits non-zero with
// a report has failing specs (in the report); without one, it failed as a
// whole and the log's tail says why.
func readCases(junit string, runErr error, log string) ([]report.Case, error) {
	cases, err := report.ReadJUnit(junit)
	if err != nil {
		if runErr == nil {
			runErr = errors.New("exited 0")
		}
		return nil, fmt.Errorf("%v and wrote no report (%v); log %s ends: %s", runErr, err, log, lastLine(log))
	}
	return cases, nil
}

func runLogged(ctx context.Context, dir, log string, env []string, bin string, args ...string) error {
	return runLoggedIn(ctx, "", dir, log, env, bin, args...)
}

func runLoggedIn(ctx context.Context, workdir, outDir, log string, env []string, bin string, args ...string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(log)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = workdir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// On cancel, interrupt first: Ginkgo then still writes its report.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(bin), err)
	}
	return nil
}

func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
