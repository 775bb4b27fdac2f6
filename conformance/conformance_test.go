package conformance

import (
	"context"
	"errors"
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
