package conformance

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/report"
)

// fakeSpecs writes a stand-in for the spec binary: it writes a JUnit and
// a JSON report in which the kernel spec passed on kernel-a and kernel-b,
// and appends to the shims' log the lines of the kernel pods' VMs: on its
// first run (no --ginkgo.focus) kernel-b found the pool empty; on a
// re-run (focused) each pod's VM is the one rerunLines gives.
func fakeSpecs(t *testing.T, shimLog, rerunB string) string {
	t.Helper()
	dir := t.TempDir()
	junit := `<testsuites><testsuite><testcase name="[It] ` + kernelSpec + ` [kernel, isolation, shared-kernel:same-boot-id]" time="1"></testcase></testsuite></testsuites>`
	jsonDoc := `[{"SpecReports":[{"ContainerHierarchyTexts":["A pod of the runtime class under test"],"LeafNodeType":"It",` +
		`"LeafNodeText":"has a kernel of its own, not shared with another pod of the class","ReportEntries":[` +
		`{"Name":"podvm-used-pod","Value":{"Representation":"NS/kernel-a"}},{"Name":"podvm-used-pod","Value":{"Representation":"NS/kernel-b"}}]}]}]`
	first := join(vmLines("kernel-a", "aa01", takenLine("aa01")), vmLines("kernel-b", "bb02", bootedLine("bb02", poolEmpty)))
	again := join(vmLines("kernel-a", "cc03", takenLine("cc03")), vmLines("kernel-b", "dd04", strings.ReplaceAll(rerunB, "ID", "dd04")))
	for name, text := range map[string]string{"junit.xml": junit, "report.json": jsonDoc, "first.log": first + "\n", "again.log": again + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
D=` + dir + `
lines=$D/first.log ns=first
while [ $# -gt 0 ]; do
	case "$1" in
	--ginkgo.junit-report) junit=$2; shift ;;
	--ginkgo.json-report) json=$2; shift ;;
	--ginkgo.focus) lines=$D/again.log ns=again; echo "$2" > $D/focus ;;
	esac
	shift
done
cp $D/junit.xml "$junit"
sed "s/NS/$ns/g" $D/report.json > "$json"
sed "s/ns1/$ns/g" $lines >> ` + shimLog + `
`
	bin := filepath.Join(dir, "specs")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// A spec that passed on a VM booted because the pool was empty is run
// once more after the factory is ready: a re-run on cached VMs stands (the
// first run kept in words); a second miss fails the class.
func TestFactoryRerun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rerunB string
		ok     bool
		detail string
	}{
		{name: "the re-run's pods took cached VMs", rerunB: takenLine("ID"), ok: true, detail: "kernel-a cached, kernel-b cached"},
		{name: "the re-run's pods found the pool empty again", rerunB: bootedLine("ID", poolEmpty), detail: "kernel-a cached, kernel-b booted (pool empty): this spec must run on cached VMs only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shimLog := filepath.Join(t.TempDir(), "containerd.log")
			os.WriteFile(shimLog, []byte(takenLine("0ld0")+"\n"), 0o644)
			waits := 0
			o := Options{
				Cluster: &cluster.Cluster{Kubeconfig: "kc", CacheClasses: []string{"podvm-cache"}, ShimLog: shimLog,
					FactoryReady: func(context.Context, string) error { waits++; return nil }},
				OutDir: t.TempDir(), SpecBinary: fakeSpecs(t, shimLog, tc.rerunB), Progress: io.Discard,
			}
			run := runSpecs(context.Background(), o, "podvm-cache")
			if run.Err != nil || len(run.Cases) != 1 || run.Cases[0].Outcome != report.Passed {
				t.Fatalf("run: %+v", run)
			}
			if waits != 2 {
				t.Errorf("the factory was waited for %d times, want 2 (before the run and before the re-run)", waits)
			}
			so := run.SpecOrigins[0]
			if so.OK != tc.ok || so.Detail != tc.detail || so.FirstRun != "kernel-a cached, kernel-b booted (pool empty): this spec must run on cached VMs only" {
				t.Errorf("origin after the re-run: %+v", so)
			}
			if len(so.PodVMs) != 2 || so.PodVMs[0].Sandbox != "cc03" || so.PodVMs[1].Sandbox != "dd04" {
				t.Errorf("the re-run's pod VMs: %+v", so.PodVMs)
			}
			if !run.Origin.OK || !strings.Contains(run.Origin.Detail, "of 4 pod VMs") {
				t.Errorf("the class's totals count both runs' VMs and not the earlier ones: %+v", run.Origin)
			}
			rep := &report.Report{Runs: []report.Run{{Suite: "s", RuntimeClass: "runc", Baseline: true, Cases: []report.Case{{Name: "x", Outcome: report.Failed}}}, run}}
			var failed bool
			for _, u := range rep.Unexpected() {
				failed = failed || u.Case == kernelSpec+" (pod VMs' origin)"
			}
			if failed == tc.ok {
				t.Errorf("the spec's origin among the unexpected results: %v, want %v: %+v", failed, !tc.ok, rep.Unexpected())
			}
		})
	}
}
