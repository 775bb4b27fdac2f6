package conformance

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/podvm/podvm/conformance/nodesuite"
	"github.com/podvm/podvm/conformance/report"
)

// NodeSuiteName names the upstream node conformance suite in the report.
const NodeSuiteName = "upstream node conformance (e2e [sig-node] [Conformance] through the runtime class)"

// runNodeSuite runs the upstream node conformance specs once per class of
// o.NodeClasses, each with the admission policy that puts the specs' pods
// on that class, and compares every class with the first, the baseline.
func runNodeSuite(ctx context.Context, o Options, progress func(string, ...any)) ([]report.Run, report.Comparison) {
	k := nodesuite.Kubectl{Binary: o.Kubectl, Kubeconfig: o.Cluster.Kubeconfig}
	var runs []report.Run
	for _, class := range o.NodeClasses {
		progress("upstream node conformance with runtime class %q (pods put on it by a MutatingAdmissionPolicy)", class)
		run := runNodeClass(ctx, o, k, class)
		progress("   %s", summary(run))
		runs = append(runs, run)
	}
	cmp := report.Compare(NodeSuiteName, runs, nodesuite.Known)
	for i := range runs {
		if runs[i].Err == nil {
			runs[i].Checked = cmp.Check(runs[i].RuntimeClass)
		}
	}
	return runs, cmp
}

// runNodeClass installs the class's policy, runs the specs and removes the
// policy again, also when the run fails or is interrupted.
func runNodeClass(ctx context.Context, o Options, k nodesuite.Kubectl, class string) (run report.Run) {
	dir := filepath.Join(o.OutDir, "node-conformance", class)
	run = report.Run{Suite: NodeSuiteName, RuntimeClass: class, Log: filepath.Join(dir, "e2e.log")}
	c, err := k.LookupClass(ctx, class)
	if err == nil {
		err = k.Install(ctx, c)
	}
	if err == nil {
		err = k.Verify(ctx, c)
	}
	defer func() {
		if err := k.Remove(context.WithoutCancel(ctx), class); err != nil && run.Err == nil {
			run.Err = err
		}
	}()
	if err != nil {
		run.Err = err
		return run
	}
	junit := filepath.Join(dir, "junit_01.xml")
	bin, args := nodeSuiteCommand(o, dir, junit)
	start := time.Now()
	runErr := runLogged(ctx, dir, run.Log, nil, bin, args...)
	run.Duration = time.Since(start)
	run.Cases, run.Err = readCases(junit, runErr, run.Log)
	run.Cases = withoutUnselected(run.Cases)
	if run.Err == nil && len(run.Cases) == 0 {
		run.Err = noCasesError(o, runErr, run.Log)
	}
	return run
}

// noCasesError says why a run's report holds no selected spec: the suite
// ended before running one (killed, interrupted: Ginkgo still writes a
// report, with every spec skipped), or nothing matched the focus.
func noCasesError(o Options, runErr error, log string) error {
	if runErr != nil {
		return fmt.Errorf("%v before any selected spec finished (focus %q); log %s ends: %s", runErr, o.NodeFocus, log, lastLine(log))
	}
	return fmt.Errorf("no spec matched focus %q (skip %q)", o.NodeFocus, o.NodeSkip)
}

// nodeSuiteCommand is the command that runs the selected specs: e2e.test
// itself, one spec at a time, or with o.NodeProcs > 1 the Ginkgo CLI
// running e2e.test in that many processes. Most node specs wait (a probe's
// four minutes, a hook's timeout) rather than work, so processes cut the
// suite's time; Ginkgo still runs the [Serial] specs alone, after the
// others.
func nodeSuiteCommand(o Options, dir, junit string) (string, []string) {
	suite := []string{"--kubeconfig", o.Cluster.Kubeconfig, "--provider", "skeleton",
		"--report-dir", dir, "--dump-logs-on-failure=false"}
	if o.NodeProcs <= 1 {
		args := append(suite, "--ginkgo.focus", o.NodeFocus, "--ginkgo.no-color", "--ginkgo.v",
			"--ginkgo.timeout", "4h", "--ginkgo.junit-report", junit)
		if o.NodeSkip != "" {
			args = append(args, "--ginkgo.skip", o.NodeSkip)
		}
		return o.E2EBinary, args
	}
	args := []string{"run", "--procs", strconv.Itoa(o.NodeProcs), "--focus", o.NodeFocus, "--no-color", "-v",
		"--timeout", "4h", "--output-dir", dir, "--junit-report", filepath.Base(junit)}
	if o.NodeSkip != "" {
		args = append(args, "--skip", o.NodeSkip)
	}
	args = append(args, o.E2EBinary, "--")
	return o.Ginkgo, append(args, suite...)
}
