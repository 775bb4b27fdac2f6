package conformance

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/podvm/podvm/conformance/report"
)

// specRun is one run of the spec binary.
type specRun struct {
	cases []report.Case
	err   error
	// used are the pods each spec used (its JSON report), shims the lines
	// the node's shims wrote while it ran.
	used     map[string][]string
	shims    string
	duration time.Duration
}

// runSpecs runs the spec suite with one runtime class. On a factory class
// (pod VMs from the VM cache or cloned from templates) it first waits
// until the factory can serve the run, then judges where each spec's pod
// VMs came from, and runs once more the specs that passed on VMs the
// factory should have served and did not (factoryRerun).
func runSpecs(ctx context.Context, o Options, class string) report.Run {
	name := class
	if name == "" {
		name = "default"
	}
	dir := filepath.Join(o.OutDir, "specs", name)
	run := report.Run{Suite: "isolation specs (spec/)", RuntimeClass: name, Baseline: slices.Contains(o.Baselines, class), Log: filepath.Join(dir, "specs.log")}
	mode := factoryMode(o, class)
	if mode != "" {
		o.waitFactory(ctx, class)
	}
	first := runSpecBinary(ctx, o, class, dir, "")
	run.Duration, run.Cases, run.Err = first.duration, first.cases, first.err
	if o.SpecLabelFilter != "" {
		// Specs outside the filter are not results: an isolation spec
		// left out must not count as "skipped where a failure is expected".
		run.Cases = withoutUnselected(run.Cases)
	}
	if mode != "" {
		judgeFactoryRun(ctx, o, class, mode, dir, &run, first)
	}
	return run
}

// factoryMode is the factory a class's pod VMs must come from ("" for
// none, or when the harness cannot read the node's shims' log).
func factoryMode(o Options, class string) string {
	c := o.Cluster
	switch {
	case c.ShimLog == "":
		return ""
	case slices.Contains(c.CacheClasses, class):
		return modeCache
	case slices.Contains(c.TemplateClasses, class):
		return modeTemplate
	}
	return ""
}

// waitFactory waits until the class's factory can serve a spec run (the
// VM cache's pool full); a factory that does not get there is said, and
// the run goes on: its pods' origins show what it cost.
func (o Options) waitFactory(ctx context.Context, class string) {
	if o.Cluster.FactoryReady == nil {
		return
	}
	start := time.Now()
	if err := o.Cluster.FactoryReady(ctx, class); err != nil {
		fmt.Fprintf(o.Progress, "==>    the VM factory of class %s is not ready: %v\n", class, err)
		return
	}
	fmt.Fprintf(o.Progress, "==>    the VM factory of class %s is ready (waited %s)\n", class, time.Since(start).Round(time.Second))
}

// runSpecBinary runs the spec binary once with class into dir; focus, if
// not empty, selects the specs (Ginkgo's --focus).
func runSpecBinary(ctx context.Context, o Options, class, dir, focus string) specRun {
	log, junit, jsonReport := filepath.Join(dir, "specs.log"), filepath.Join(dir, "junit.xml"), filepath.Join(dir, "report.json")
	args := []string{"--kubeconfig", o.Cluster.Kubeconfig, "--runtime-class", class,
		"--ginkgo.junit-report", junit, "--ginkgo.json-report", jsonReport,
		"--ginkgo.no-color", "--ginkgo.v", "--ginkgo.timeout", "1h"}
	if o.SpecLabelFilter != "" {
		args = append(args, "--ginkgo.label-filter", o.SpecLabelFilter)
	}
	if focus != "" {
		args = append(args, "--ginkgo.focus", focus)
	}
	args = append(args, o.SpecArgs...)
	offset := logOffset(o.Cluster.ShimLog)
	start := time.Now()
	err := runLogged(ctx, dir, log, nil, o.SpecBinary, args...)
	r := specRun{duration: time.Since(start)}
	r.cases, r.err = readCases(junit, err, log)
	if o.Cluster.ShimLog != "" {
		r.shims, _ = logSince(o.Cluster.ShimLog, offset)
		r.used, _ = readUsedPods(jsonReport)
	}
	return r
}

// judgeFactoryRun sets the run's per-spec origins and its totals. A spec
// that passed although its origin check failed for VMs the factory did not
// serve (the pool empty at that moment, a template another pod was
// saving) is run once more, alone with the others of its kind, after the
// factory is ready again; the re-run's result and origin replace the
// first's, which the report keeps in words. A second miss fails the class.
func judgeFactoryRun(ctx context.Context, o Options, class, mode, dir string, run *report.Run, first specRun) {
	run.SpecOrigins = specOrigins(mode, run.Cases, first.used, readPodVMs(first.shims))
	shims := first.shims
	if again := rerunnable(run); len(again) > 0 && run.Err == nil {
		fmt.Fprintf(o.Progress, "==>    %d spec(s) ran on pod VMs that booted where the factory should have served them: running them once more\n", len(again))
		o.waitFactory(ctx, class)
		second := runSpecBinary(ctx, o, class, filepath.Join(dir, "rerun"), focusOn(again))
		mergeRerun(mode, run, again, second)
		run.Duration += second.duration
		shims += second.shims
	}
	run.Origin = factoryOrigin(mode, readPodVMs(shims))
}

// rerunnable are the specs that passed on pod VMs that say where they came
// from but were not the factory's where they should have been.
func rerunnable(run *report.Run) []string {
	passed := map[string]bool{}
	for _, c := range run.Cases {
		passed[c.Name] = c.Outcome == report.Passed
	}
	var out []string
	for _, so := range run.SpecOrigins {
		unsaid := slices.ContainsFunc(so.PodVMs, func(v report.PodVM) bool { return v.From == fromUnsaid })
		if !so.OK && passed[so.Spec] && !unsaid {
			out = append(out, so.Spec)
		}
	}
	return out
}

// focusOn is a Ginkgo focus selecting the named specs.
func focusOn(specs []string) string {
	q := make([]string, len(specs))
	for i, s := range specs {
		q[i] = regexp.QuoteMeta(s)
	}
	return strings.Join(q, "|")
}

// mergeRerun puts the re-run's result and origin of each spec in again in
// place of the first run's.
func mergeRerun(mode string, run *report.Run, again []string, second specRun) {
	vms := readPodVMs(second.shims)
	for _, name := range again {
		i := slices.IndexFunc(run.SpecOrigins, func(so report.SpecOrigin) bool { return so.Spec == name })
		firstDetail := run.SpecOrigins[i].Detail
		j := slices.IndexFunc(second.cases, func(c report.Case) bool { return c.Name == name })
		if j < 0 || second.cases[j].Outcome == report.Skipped {
			run.SpecOrigins[i].Detail = fmt.Sprintf("%s; the re-run did not run it (%v)", firstDetail, second.err)
			continue
		}
		c := second.cases[j]
		k := slices.IndexFunc(run.Cases, func(c report.Case) bool { return c.Name == name })
		run.Cases[k] = c
		so := judgeSpec(mode, c, podVMsOf(mode, second.used[name], vms))
		so.FirstRun = firstDetail
		run.SpecOrigins[i] = so
	}
}
