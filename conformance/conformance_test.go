package conformance

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/podvm/podvm/conformance/report"
)

func TestWithoutUnselected(t *testing.T) {
	in := []report.Case{
		{Name: "ran", Outcome: report.Passed},
		{Name: "outside the focus", Outcome: report.Skipped, Message: "skipped"},
		{Name: "no message", Outcome: report.Skipped},
		{Name: "skipped itself", Outcome: report.Skipped, Message: "skipped - node lacks test-handler"},
		{Name: "failed", Outcome: report.Failed, Message: "skipped"},
	}
	var got []string
	for _, c := range withoutUnselected(in) {
		got = append(got, c.Name)
	}
	want := []string{"ran", "skipped itself", "failed"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

func TestRunRefusesARunWithoutItsBaseline(t *testing.T) {
	out := t.TempDir()
	_, err := Run(context.Background(), Options{Classes: []string{"podvm"}, Baselines: []string{"runc"}, OutDir: out})
	if !errors.Is(err, report.ErrUsage) {
		t.Fatalf("Run with the baseline not among the classes: %v, want a usage error", err)
	}
}

func TestSuites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		suites []string
		runs   []string
		usage  bool
	}{
		{"default: what make conformance always ran", nil, []string{SuiteIsolation, SuiteRuntimeClassE2E, SuiteCritest}, false},
		{"node suite alone", []string{SuiteNodeConformance}, []string{SuiteNodeConformance}, false},
		{"unknown", []string{"node"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckSuites(tc.suites); errors.Is(err, report.ErrUsage) != tc.usage {
				t.Fatalf("CheckSuites(%q) = %v, want usage error %v", tc.suites, err, tc.usage)
			}
			if tc.usage {
				return
			}
			o := Options{Suites: tc.suites}
			for _, s := range AllSuites {
				if want := slices.Contains(tc.runs, s); o.runs(s) != want {
					t.Errorf("runs(%s) = %v, want %v", s, !want, want)
				}
			}
		})
	}
}
