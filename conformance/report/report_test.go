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
	iso := Case{Name: "kernel differs", Labels: []string{"kernel", IsolationLabel}}
	lift := Case{Name: "lift and shift", Labels: []string{"lift-and-shift"}}
	with := func(c Case, o Outcome) Case { c.Outcome = o; return c }
	tests := []struct {
		name string
		run  Run
		want []string // "case: got/want"
	}{
		{"baseline isolation spec fails as it must", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Failed), with(lift, Passed)}}, nil},
		{"baseline isolation spec passing is a broken spec", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Passed)}}, []string{"kernel differs: passed/failed"}},
		{"baseline isolation spec skipped proves nothing", Run{Suite: "s", RuntimeClass: "runc", Baseline: true,
			Cases: []Case{with(iso, Skipped)}}, []string{"kernel differs: skipped/failed"}},
		{"vm class passes", Run{Suite: "s", RuntimeClass: "podvm", Cases: []Case{with(iso, Passed), with(lift, Passed)}}, nil},
		{"vm class failure", Run{Suite: "s", RuntimeClass: "podvm", Cases: []Case{with(iso, Failed)}}, []string{"kernel differs: failed/passed"}},
		{"skip with a reason is not a failure", Run{Suite: "s", RuntimeClass: "podvm", Cases: []Case{with(lift, Skipped)}}, nil},
		{"suite error", Run{Suite: "s", RuntimeClass: "podvm", Err: errors.New("boom")}, []string{"(whole suite): failed/passed"}},
		{"empty suite", Run{Suite: "s", RuntimeClass: "podvm"}, []string{"(whole suite): missing/passed"}},
		{"suite check judges its cases", Run{Suite: "critest", RuntimeClass: "podvm", Checked: &Check{OK: true},
			Cases: []Case{with(lift, Failed)}}, nil},
		{"failed suite check", Run{Suite: "critest", RuntimeClass: "podvm", Checked: &Check{OK: false, Detail: "unlisted difference"}},
			[]string{"(suite check): failed/passed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Report{Runs: []Run{tt.run}}
			var got []string
			for _, u := range rep.Unexpected() {
				got = append(got, u.Case+": "+string(u.Got)+"/"+string(u.Want))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("unexpected = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriteMarkdownAndJUnit(t *testing.T) {
	iso := Case{Name: "kernel differs", Labels: []string{IsolationLabel}, Seconds: 2}
	rep := &Report{Title: "t", Cluster: "local", Classes: []string{"runc", "podvm"}, Runs: []Run{
		{Suite: "isolation specs", RuntimeClass: "runc", Baseline: true, Cases: []Case{{Name: iso.Name, Labels: iso.Labels, Outcome: Failed}}},
		{Suite: "isolation specs", RuntimeClass: "podvm", Cases: []Case{{Name: iso.Name, Labels: iso.Labels, Outcome: Failed, Message: "same boot_id"}}},
	}}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Verdict: FAIL**", "| kernel differs | isolation | failed (expected) 0s | **FAILED** (want passed) 0s |", "same boot_id"} {
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
	if len(cases) != 2 || cases[0].Outcome != Passed || cases[1].Outcome != Failed {
		t.Errorf("round trip through JUnit: %+v", cases)
	}
}
