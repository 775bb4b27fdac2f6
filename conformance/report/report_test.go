package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A trimmed Ginkgo v2 JUnit report: labels in brackets at the end of the
// name, setup nodes as their own cases.
const ginkgoJUnit = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" failures="1">
  <testsuite name="podvm isolation specs" tests="4">
    <testcase name="[BeforeSuite]" classname="podvm isolation specs" status="passed" time="0.1"></testcase>
    <testcase name="[It] separate guest kernel the pod's kernel differs from the node's [kernel, isolation]" classname="s" status="failed" time="3.5">
      <failure message="Expected boot_id to differ" type="failed">Expected boot_id to differ
at spec.go:10</failure>
    </testcase>
    <testcase name="[It] lift-and-shift a Deployment behaves the same [lift-and-shift]" classname="s" status="passed" time="40"></testcase>
    <testcase name="[It] limits pids limit holds [limits]" classname="s" status="skipped" time="0">
      <skipped message="skipped - node has no podPidsLimit"></skipped>
    </testcase>
  </testsuite>
</testsuites>`

func TestReadJUnitGinkgo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(path, []byte(ginkgoJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := ReadJUnit(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Case{
		{Name: "separate guest kernel the pod's kernel differs from the node's", Labels: []string{"kernel", "isolation"}, Outcome: Failed, Message: "Expected boot_id to differ", Seconds: 3.5},
		{Name: "lift-and-shift a Deployment behaves the same", Labels: []string{"lift-and-shift"}, Outcome: Passed, Seconds: 40},
		{Name: "limits pids limit holds", Labels: []string{"limits"}, Outcome: Skipped, Message: "skipped - node has no podPidsLimit"},
	}
	if len(cases) != len(want) {
		t.Fatalf("got %d cases %+v, want %d", len(cases), cases, len(want))
	}
	for i := range want {
		g, w := cases[i], want[i]
		if g.Name != w.Name || g.Outcome != w.Outcome || g.Message != w.Message || g.Seconds != w.Seconds || strings.Join(g.Labels, ",") != strings.Join(w.Labels, ",") {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestUnexpected(t *testing.T) {
	iso := Case{Name: "kernel differs", Labels: []string{"kernel", IsolationLabel, "shared-kernel:node-kernel", "shared-kernel:boot-id"}}
	undeclared := Case{Name: "declares nothing", Labels: []string{IsolationLabel}}
	lift := Case{Name: "lift and shift", Labels: []string{"lift-and-shift"}}
	with := func(c Case, o Outcome, msg string) Case { c.Outcome, c.Message = o, msg; return c }
	const proof = "shared-kernel:node-kernel: uname -r in the pod is the node's kernel release"
	tests := []struct {
		name string
		run  Run
		want []string // "case: got/want", "harness" marks a harness error
	}{
		{"baseline failure with the declared fact is proof", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Failed, proof), with(lift, Passed, "")}}, nil},
		{"baseline failure with another declared fact is proof", Run{Suite: "s", RuntimeClass: "runc-fakevm", Baseline: true,
			Cases: []Case{with(iso, Failed, "shared-kernel:boot-id: same boot_id")}}, nil},
		{"baseline timeout is a harness error", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Failed, "A spec timeout occurred")}}, []string{"kernel differs: failed/failed harness"}},
		{"baseline failure with another message is a harness error", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Failed, "the node probe listed no processes")}}, []string{"kernel differs: failed/failed harness"}},
		{"baseline failure with an undeclared fact is a harness error", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Failed, "shared-kernel:node-memory: pod sees the node's memory")}}, []string{"kernel differs: failed/failed harness"}},
		{"isolation spec declaring no fact proves nothing", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(undeclared, Failed, proof)}}, []string{"declares nothing: failed/failed harness"}},
		{"baseline isolation spec passing is a broken spec", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Passed, "")}}, []string{"kernel differs: passed/failed"}},
		{"baseline isolation spec skipped proves nothing", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Skipped, "skipped - small node")}}, []string{"kernel differs: skipped/failed"}},
		{"vm class passes", Run{Suite: "s", RuntimeClass: "podvm", Cases: []Case{with(iso, Passed, ""), with(lift, Passed, "")}}, nil},
		{"vm class failure", Run{Suite: "s", RuntimeClass: "podvm", Cases: []Case{with(iso, Failed, proof)}}, []string{"kernel differs: failed/passed"}},
		{"skip with a reason is not a failure", Run{Suite: "s", RuntimeClass: "podvm", Cases: []Case{with(lift, Skipped, "why")}}, nil},
		{"suite error", Run{Suite: "s", RuntimeClass: "podvm", Err: errors.New("boom")}, []string{"(whole suite): failed/passed"}},
		{"empty suite", Run{Suite: "s", RuntimeClass: "podvm"}, []string{"(whole suite): missing/passed"}},
		{"suite check judges its cases", Run{Suite: "critest", RuntimeClass: "podvm", Checked: &Check{OK: true},
			Cases: []Case{with(lift, Failed, "")}}, nil},
		{"failed suite check", Run{Suite: "critest", RuntimeClass: "podvm", Checked: &Check{OK: false, Detail: "unlisted difference"}},
			[]string{"(suite check): failed/passed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := []Run{tt.run}
			if !tt.run.Baseline && tt.run.Suite == "s" {
				// A baseline that proves the isolation specs, so only the run under test is judged.
				runs = append(runs, Run{Suite: "s", RuntimeClass: "runc", Baseline: true, Cases: []Case{with(iso, Failed, proof)}})
			}
			got := unexpectedList(&Report{Runs: runs})
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("unexpected = %q, want %q", got, tt.want)
			}
		})
	}
}

func unexpectedList(rep *Report) []string {
	var got []string
	for _, u := range rep.Unexpected() {
		s := u.Case + ": " + string(u.Got) + "/" + string(u.Want)
		if u.Harness {
			s += " harness"
		}
		got = append(got, s)
	}
	return got
}

func TestMissingBaseline(t *testing.T) {
	iso := Case{Name: "kernel differs", Labels: []string{IsolationLabel, "shared-kernel:node-kernel"}, Outcome: Passed}
	lift := Case{Name: "lift and shift", Labels: []string{"lift-and-shift"}, Outcome: Passed}
	for _, tt := range []struct {
		name string
		runs []Run
		want []string
	}{
		{"isolation specs on a VM class only", []Run{{Suite: "s", RuntimeClass: "podvm", Cases: []Case{iso}}},
			[]string{"(shared-kernel baseline): missing/failed"}},
		{"no isolation spec selected needs no baseline", []Run{{Suite: "s", RuntimeClass: "podvm", Cases: []Case{lift}}}, nil},
		{"a baseline of another suite does not count", []Run{{Suite: "s", RuntimeClass: "podvm", Cases: []Case{iso}},
			{Suite: "critest", RuntimeClass: "runc", Baseline: true, Checked: &Check{OK: true}}},
			[]string{"(shared-kernel baseline): missing/failed"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := unexpectedList(&Report{Runs: tt.runs})
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("unexpected = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckClasses(t *testing.T) {
	for _, tt := range []struct {
		name               string
		classes, baselines []string
		ok                 bool
	}{
		{"runc among the classes", []string{"runc", "podvm"}, []string{"runc"}, true},
		{"two baselines", []string{"runc", "runc-fakevm", "podvm"}, []string{"runc", "runc-fakevm"}, true},
		{"baseline not run", []string{"podvm"}, []string{"runc"}, false},
		{"one of two baselines not run", []string{"runc", "podvm"}, []string{"runc", "runc-fakevm"}, false},
		{"no baseline", []string{"podvm"}, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckClasses(tt.classes, tt.baselines)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckClasses(%q, %q) = %v, want ok %v", tt.classes, tt.baselines, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUsage) {
				t.Fatalf("error %v is not a usage error", err)
			}
		})
	}
}

func TestSkipsInVerdict(t *testing.T) {
	lift := Case{Name: "lift and shift", Labels: []string{"lift-and-shift"}}
	nproc := Case{Name: "nproc", Labels: []string{"limits"}, Outcome: Skipped, Message: "skipped - node has 1 CPU"}
	lift.Outcome = Passed
	rep := &Report{Title: "t", Runs: []Run{{Suite: "s", RuntimeClass: "podvm", Cases: []Case{lift, nproc}}}}
	skips := rep.Skips()
	if len(skips) != 1 || skips[0].Case != "nproc" || skips[0].Run != "s [podvm]" {
		t.Fatalf("skips = %+v, want the nproc spec", skips)
	}
	if !rep.OK() {
		t.Fatalf("a skip is not a failure: %v", rep.Unexpected())
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Verdict: PASS** (1 skipped where a pass is wanted: not counted as passes)", "- s [podvm]: nproc: skipped - node has 1 CPU"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

func TestWriteMarkdownAndJUnit(t *testing.T) {
	iso := Case{Name: "kernel differs", Labels: []string{IsolationLabel, "shared-kernel:boot-id"}, Seconds: 2}
	rep := &Report{Title: "t", Cluster: "local", Classes: []string{"runc", "runc-fakevm", "podvm"}, Runs: []Run{
		{Suite: "isolation specs", RuntimeClass: "runc", Baseline: true, Cases: []Case{{Name: iso.Name, Labels: iso.Labels, Outcome: Failed, Message: "shared-kernel:boot-id: same"}}},
		{Suite: "isolation specs", RuntimeClass: "runc-fakevm", Baseline: true, Cases: []Case{{Name: iso.Name, Labels: iso.Labels, Outcome: Failed, Message: "A spec timeout occurred"}}},
		{Suite: "isolation specs", RuntimeClass: "podvm", Cases: []Case{{Name: iso.Name, Labels: iso.Labels, Outcome: Failed, Message: "same boot_id"}}},
	}}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Verdict: FAIL**", "| kernel differs | isolation, shared-kernel:boot-id | failed (expected) 0s | **HARNESS ERROR** (failed, but not showing shared-kernel:boot-id) 0s | **FAILED** (want passed) 0s |", "same boot_id",
		"runc-fakevm]: kernel differs: harness error: failed for another reason than the shared-kernel fact it declares: A spec timeout occurred"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	var ju bytes.Buffer
	if err := rep.WriteJUnit(&ju); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "j.xml")
	os.WriteFile(path, ju.Bytes(), 0o644)
	cases, err := ReadJUnit(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 3 || cases[0].Outcome != Passed || cases[1].Outcome != Failed || cases[2].Outcome != Failed {
		t.Errorf("round trip through JUnit: %+v", cases)
	}
}

// The spec suite's JUnit names carry the shared-kernel facts as labels.
func TestFactsFromGinkgoLabels(t *testing.T) {
	const doc = `<testsuites><testsuite name="s">
<testcase name="[It] A pod does not see the node&#39;s processes [kernel, isolation, shared-kernel:node-tasks, shared-kernel:node-runs-pod]" status="failed">
<failure message="shared-kernel:node-runs-pod: the node&#39;s /proc lists the pod&#39;s processes&#xA;Expected">x</failure></testcase>
</testsuite></testsuites>`
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := ReadJUnit(path)
	if err != nil || len(cases) != 1 {
		t.Fatalf("ReadJUnit: %v, %+v", err, cases)
	}
	if got := strings.Join(cases[0].Facts(), ","); got != "shared-kernel:node-tasks,shared-kernel:node-runs-pod" {
		t.Errorf("facts %q", got)
	}
	if j := (Run{Baseline: true}).Judge(cases[0]); j.Kind != AsExpected {
		t.Errorf("a baseline failure showing a declared fact judged %+v", j)
	}
}
