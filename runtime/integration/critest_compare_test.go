package integration

import (
	"reflect"
	"strings"
	"testing"
)

// TestCritestKnownDifferencesDoc keeps docs/critest.md readable by the
// critest test: every listed spec sits under one of the two sections and a
// feature heading.
func TestCritestKnownDifferencesDoc(t *testing.T) {
	known, err := readKnownDifferences(knownDifferencesDoc)
	if err != nil {
		t.Fatal(err)
	}
	if len(known) == 0 {
		t.Fatal("no specs listed")
	}
	for name, k := range known {
		inherent := strings.HasPrefix(k.Section, "Inherent differences")
		notYet := strings.HasPrefix(k.Section, "Not yet implemented")
		if !inherent && !notYet || k.Feature == "" {
			t.Errorf("%q is listed under section %q, heading %q", name, k.Section, k.Feature)
		}
	}
}

func TestCritestCompare(t *testing.T) {
	runc := &critestRun{Specs: map[string]string{"a": "passed", "b": "passed", "c": "passed", "d": "passed", "e": "skipped"}}
	podvm := &critestRun{Specs: map[string]string{"a": "failed", "b": "skipped", "c": "passed", "d": "timedout", "e": "skipped"}}
	known := map[string]knownDifference{"a": {}, "c": {}, "gone": {}}
	got := compare(runc, podvm, known)
	want := comparison{
		RegressedVsRunc: []string{"a", "b", "d"},
		Unexpected:      []string{"b", "d"},
		NowPassing:      []string{"c"},
		Missing:         []string{"gone"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("compare:\n got %+v\nwant %+v", got, want)
	}
}
