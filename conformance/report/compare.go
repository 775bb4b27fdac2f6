package report

import (
	"fmt"
	"slices"
	"strings"
)

// KnownDifference explains why a spec's outcome with a runtime class differs
// from the baseline's (or, for the baseline itself, why it fails there).
type KnownDifference struct {
	Class  string
	Spec   string // the spec's full name, as in the report
	Reason string
}

// Difference is one spec whose outcome with Class is not the baseline's;
// on the baseline itself, a spec that failed. Reason is "" when no known
// difference explains it.
type Difference struct {
	Spec, Class      string
	Got, BaselineGot Outcome
	Message, Reason  string
}

// Comparison sets the runs of one suite side by side, spec by spec, against
// the baseline run (the first).
type Comparison struct {
	Suite       string
	Runs        []Run // Runs[0] is the baseline
	Differences []Difference
}

// Compare compares every run with runs[0], the baseline, and explains each
// difference from known where it can.
func Compare(suite string, runs []Run, known []KnownDifference) Comparison {
	cmp := Comparison{Suite: suite, Runs: runs}
	if len(runs) == 0 {
		return cmp
	}
	base := outcomes(runs[0])
	for i, r := range runs {
		if r.Err != nil {
			continue
		}
		for _, c := range r.Cases {
			want, ok := base[c.Name]
			if !ok {
				want = Missing
			}
			differs := c.Outcome != want
			if i == 0 {
				differs = c.Outcome == Failed
			}
			if !differs {
				continue
			}
			d := Difference{Spec: c.Name, Class: r.RuntimeClass, Got: c.Outcome, BaselineGot: want, Message: c.Message}
			d.Reason = knownReason(known, r.RuntimeClass, c.Name)
			cmp.Differences = append(cmp.Differences, d)
		}
		if i > 0 {
			cmp.Differences = append(cmp.Differences, missingFrom(r, runs[0], known)...)
		}
	}
	return cmp
}

// missingFrom lists the baseline's specs that run r never reported: a run
// cut short (a timeout, an interrupt) must not read as agreement.
func missingFrom(r, baseline Run, known []KnownDifference) []Difference {
	got := outcomes(r)
	var out []Difference
	for _, c := range baseline.Cases {
		if _, ok := got[c.Name]; ok {
			continue
		}
		out = append(out, Difference{Spec: c.Name, Class: r.RuntimeClass, Got: Missing, BaselineGot: c.Outcome,
			Reason: knownReason(known, r.RuntimeClass, c.Name)})
	}
	return out
}

// knownReason is the reason a known difference gives for spec on class, "".
func knownReason(known []KnownDifference, class, spec string) string {
	if k := slices.IndexFunc(known, func(k KnownDifference) bool { return k.Class == class && k.Spec == spec }); k >= 0 {
		return known[k].Reason
	}
	return ""
}

func outcomes(r Run) map[string]Outcome {
	m := make(map[string]Outcome, len(r.Cases))
	for _, c := range r.Cases {
		m[c.Name] = c.Outcome
	}
	return m
}

// Unexplained lists the differences of class no known difference explains.
func (cmp Comparison) Unexplained(class string) []Difference {
	var out []Difference
	for _, d := range cmp.Differences {
		if d.Class == class && d.Reason == "" {
			out = append(out, d)
		}
	}
	return out
}

// Check is the verdict on one class's run: every difference explained.
func (cmp Comparison) Check(class string) *Check {
	base := cmp.Runs[0].RuntimeClass
	what := "differs from " + base + " only as the known differences explain"
	if class == base {
		what = "fails only where the known differences explain it (the baseline)"
	}
	un := cmp.Unexplained(class)
	if len(un) == 0 {
		return &Check{OK: true, Detail: what}
	}
	names := make([]string, len(un))
	for i, d := range un {
		names[i] = d.Spec
	}
	return &Check{OK: false, Detail: fmt.Sprintf("%d unexplained difference(s) from %s: %s", len(un), base, strings.Join(names, "; "))}
}

// WriteMarkdown writes the side-by-side table and the differences.
func (cmp Comparison) WriteMarkdown(b *strings.Builder) {
	if len(cmp.Runs) == 0 {
		return
	}
	fmt.Fprintf(b, "### %s: spec by spec\n\n", cmp.Suite)
	b.WriteString("| spec |")
	for _, r := range cmp.Runs {
		fmt.Fprintf(b, " %s |", orDash(r.RuntimeClass))
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(cmp.Runs)) + "\n")
	var names []string
	cell := map[string]map[int]Outcome{}
	for i, r := range cmp.Runs {
		for _, c := range r.Cases {
			if _, ok := cell[c.Name]; !ok {
				names = append(names, c.Name)
				cell[c.Name] = map[int]Outcome{}
			}
			cell[c.Name][i] = c.Outcome
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(b, "| %s |", mdEscape(n))
		for i := range cmp.Runs {
			o, ok := cell[n][i]
			if !ok {
				o = Missing
			}
			fmt.Fprintf(b, " %s |", o)
		}
		b.WriteString("\n")
	}
	cmp.writeDifferences(b)
}

func (cmp Comparison) writeDifferences(b *strings.Builder) {
	fmt.Fprintf(b, "\n### %s: differences from %s\n\n", cmp.Suite, cmp.Runs[0].RuntimeClass)
	if len(cmp.Differences) == 0 {
		b.WriteString("None: every class has the baseline's outcome for every spec, and the baseline failed none.\n\n")
		return
	}
	b.WriteString("| class | spec | got | baseline | why |\n| --- | --- | --- | --- | --- |\n")
	for _, d := range cmp.Differences {
		why := mdEscape(d.Reason)
		if d.Reason == "" {
			why = "**UNEXPLAINED**: " + mdEscape(d.Message)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", d.Class, mdEscape(d.Spec), d.Got, d.BaselineGot, why)
	}
	b.WriteString("\n")
}
