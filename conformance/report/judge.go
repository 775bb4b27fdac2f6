package report

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// FactLabelPrefix starts the label by which an isolation spec declares a
// shared-kernel fact it expects to see on a baseline, as in
// "shared-kernel:node-memory". The spec's failure message on a baseline must
// carry the same text: that is how the report tells a spec failing for the
// reason it exists from one failing because the harness broke. The spec
// module (spec/, fact.go) writes both and cannot import this package, so the
// prefix is spelled in both places.
const FactLabelPrefix = "shared-kernel:"

// Facts lists the shared-kernel facts a case declares, as full labels.
func (c Case) Facts() []string {
	var out []string
	for _, l := range c.Labels {
		if strings.HasPrefix(l, FactLabelPrefix) && len(l) > len(FactLabelPrefix) {
			out = append(out, l)
		}
	}
	return out
}

// Kind classifies an outcome against the wanted one.
type Kind int

const (
	// AsExpected: the wanted outcome; on a baseline, an isolation spec
	// failed showing one of the shared-kernel facts it declares.
	AsExpected Kind = iota
	// SkippedInstead: skipped where a pass is wanted. Not a failure, not a
	// pass either: the verdict line names it.
	SkippedInstead
	// HarnessError: an isolation spec failed on a baseline, but not for a
	// fact it declares (a timeout, a pod that did not start, a broken
	// probe); it proves nothing about the kernel.
	HarnessError
	// Wrong: any other outcome than the wanted one.
	Wrong
)

// Judgement is what one case's outcome means in its run.
type Judgement struct {
	Want Outcome
	Why  string // why that outcome is wanted, "" for a plain pass
	Kind Kind
}

// Judge tells what outcome a case should have in this run and how its
// actual outcome compares.
func (r Run) Judge(c Case) Judgement {
	if !r.Baseline || !c.HasLabel(IsolationLabel) {
		j := Judgement{Want: Passed, Kind: Wrong}
		switch c.Outcome {
		case Passed:
			j.Kind = AsExpected
		case Skipped:
			j.Kind = SkippedInstead
		}
		return j
	}
	facts := c.Facts()
	j := Judgement{Want: Failed, Kind: Wrong,
		Why: "isolation spec on a shared-kernel baseline: must fail showing " + orNone(facts)}
	if c.Outcome != Failed {
		return j
	}
	j.Kind = HarnessError
	if slices.ContainsFunc(facts, func(f string) bool { return strings.Contains(c.Message, f) }) {
		j.Kind = AsExpected
	}
	return j
}

func orNone(facts []string) string {
	if len(facts) == 0 {
		return "a shared-kernel fact (the spec declares none: a " + FactLabelPrefix + "<fact> label)"
	}
	return strings.Join(facts, " or ")
}

// ErrUsage marks a run that was asked for in a way that cannot give a
// verdict; nothing is run.
var ErrUsage = errors.New("usage")

// CheckClasses checks the runtime classes of a run before anything runs:
// at least one baseline, and each baseline among the classes run, or the
// isolation specs would "pass" with nothing to show they can fail.
func CheckClasses(classes, baselines []string) error {
	if len(baselines) == 0 {
		return fmt.Errorf("%w: no baseline runtime class: isolation specs need a shared-kernel class (runc) to show they can fail", ErrUsage)
	}
	for _, b := range baselines {
		if !slices.Contains(classes, b) {
			return fmt.Errorf("%w: baseline runtime class %q is not among the classes run (%s): add it, or isolation specs pass unproven",
				ErrUsage, b, strings.Join(classes, ","))
		}
	}
	return nil
}
