package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	const a, b, c = "[sig-node] A [Conformance]", "[sig-node] B [Conformance]", "[sig-node] C [Conformance]"
	run := func(class string, outcomes ...Outcome) Run {
		r := Run{Suite: "node", RuntimeClass: class}
		for i, o := range outcomes {
			r.Cases = append(r.Cases, Case{Name: []string{a, b, c}[i], Outcome: o, Message: "msg " + string(o)})
		}
		return r
	}
	known := []KnownDifference{{Class: "podvm", Spec: b, Reason: "known: b"}, {Class: "runc", Spec: c, Reason: "local cluster: c"}}
	for _, tc := range []struct {
		name                              string
		runs                              []Run
		want                              []Difference
		unexplainedPodvm, unexplainedRunc int
	}{
		{"same outcomes", []Run{run("runc", Passed, Passed, Skipped), run("podvm", Passed, Passed, Skipped)}, nil, 0, 0},
		{"explained", []Run{run("runc", Passed, Passed, Passed), run("podvm", Passed, Failed, Passed)},
			[]Difference{{Spec: b, Class: "podvm", Got: Failed, BaselineGot: Passed, Message: "msg failed", Reason: "known: b"}}, 0, 0},
		{"unexplained, also a skip", []Run{run("runc", Passed, Passed, Passed), run("podvm", Failed, Passed, Skipped)},
			[]Difference{
				{Spec: a, Class: "podvm", Got: Failed, BaselineGot: Passed, Message: "msg failed"},
				{Spec: c, Class: "podvm", Got: Skipped, BaselineGot: Passed, Message: "msg skipped"},
			}, 2, 0},
		{"baseline failures need a reason too", []Run{run("runc", Failed, Passed, Failed), run("podvm", Failed, Passed, Failed)},
			[]Difference{
				{Spec: a, Class: "runc", Got: Failed, BaselineGot: Failed, Message: "msg failed"},
				{Spec: c, Class: "runc", Got: Failed, BaselineGot: Failed, Message: "msg failed", Reason: "local cluster: c"},
			}, 0, 1},
		{"missing on the baseline", []Run{run("runc", Passed), run("podvm", Passed, Passed)},
			[]Difference{{Spec: b, Class: "podvm", Got: Passed, BaselineGot: Missing, Message: "msg passed", Reason: "known: b"}}, 0, 0},
		{"missing on the baseline, unexplained", []Run{run("runc", Passed, Passed), run("podvm", Passed, Passed, Passed)},
			[]Difference{{Spec: c, Class: "podvm", Got: Passed, BaselineGot: Missing, Message: "msg passed"}}, 1, 0},
		{"cut short: specs the baseline ran never ran", []Run{run("runc", Passed, Passed, Passed), run("podvm", Passed)},
			[]Difference{
				{Spec: b, Class: "podvm", Got: Missing, BaselineGot: Passed, Reason: "known: b"},
				{Spec: c, Class: "podvm", Got: Missing, BaselineGot: Passed},
			}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmp := Compare("node", tc.runs, known)
			if len(cmp.Differences) != len(tc.want) {
				t.Fatalf("differences %+v, want %+v", cmp.Differences, tc.want)
			}
			for i := range tc.want {
				if cmp.Differences[i] != tc.want[i] {
					t.Errorf("difference %d: %+v, want %+v", i, cmp.Differences[i], tc.want[i])
				}
			}
			if n := len(cmp.Unexplained("podvm")); n != tc.unexplainedPodvm {
				t.Errorf("podvm unexplained %d, want %d", n, tc.unexplainedPodvm)
			}
			if n := len(cmp.Unexplained("runc")); n != tc.unexplainedRunc {
				t.Errorf("runc unexplained %d, want %d", n, tc.unexplainedRunc)
			}
			if ok := cmp.Check("podvm").OK; ok != (tc.unexplainedPodvm == 0) {
				t.Errorf("podvm check OK = %v with %d unexplained", ok, tc.unexplainedPodvm)
			}
		})
	}
}

func TestComparisonInReport(t *testing.T) {
	base := Run{Suite: "node", RuntimeClass: "runc", Cases: []Case{{Name: "[sig-node] A", Outcome: Passed}, {Name: "[sig-node] B", Outcome: Passed}}}
	vm := Run{Suite: "node", RuntimeClass: "podvm", Cases: []Case{{Name: "[sig-node] A", Outcome: Passed}, {Name: "[sig-node] B", Outcome: Failed, Message: "timed out"}}}
	cmp := Compare("node", []Run{base, vm}, nil)
	base.Checked, vm.Checked = cmp.Check("runc"), cmp.Check("podvm")
	rep := &Report{Title: "t", Runs: []Run{base, vm}, Comparisons: []Comparison{cmp}}
	if rep.OK() {
		t.Error("report OK with an unexplained difference")
	}
	var md strings.Builder
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| [sig-node] B | passed | failed |",
		"| podvm | [sig-node] B | failed | passed | **UNEXPLAINED**: timed out |",
		"node [podvm] check FAILED: 1 unexplained difference(s) from runc: [sig-node] B",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}

// TestReadE2EJUnit reads the JUnit e2e.test writes: inline tags stay in the
// name, the label list goes.
func TestReadE2EJUnit(t *testing.T) {
	const doc = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" disabled="0" errors="0" failures="1" time="10">
  <testsuite name="Kubernetes e2e suite" package="/" tests="3">
    <testcase name="[It] [sig-node] Pods should be updated [NodeConformance] [Conformance] [sig-node, NodeConformance, Conformance]" classname="Kubernetes e2e suite" status="passed" time="4.2"></testcase>
    <testcase name="[It] [sig-node] Probing container should *not* be restarted with a GRPC liveness probe [NodeConformance] [Conformance] [sig-node, NodeConformance, Conformance]" classname="Kubernetes e2e suite" status="failed" time="240">
      <failure message="restart count 5" type="failed">[FAILED] restart count 5
more</failure>
    </testcase>
    <testcase name="[It] [sig-apps] Deployment should work [Conformance] [sig-apps, Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
  </testsuite>
</testsuites>`
	path := filepath.Join(t.TempDir(), "junit_01.xml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := ReadJUnit(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Case{
		{Name: "[sig-node] Pods should be updated [NodeConformance] [Conformance]", Outcome: Passed},
		{Name: "[sig-node] Probing container should *not* be restarted with a GRPC liveness probe [NodeConformance] [Conformance]", Outcome: Failed, Message: "restart count 5"},
		{Name: "[sig-apps] Deployment should work [Conformance]", Outcome: Skipped, Message: "skipped"},
	}
	if len(cases) != len(want) {
		t.Fatalf("cases %+v", cases)
	}
	for i, w := range want {
		if cases[i].Name != w.Name || cases[i].Outcome != w.Outcome || cases[i].Message != w.Message {
			t.Errorf("case %d: %+v, want %+v", i, cases[i], w)
		}
	}
}
