package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Run is one suite run against one runtime class ("" for suites that do
// not take one, such as the upstream RuntimeClass specs).
type Run struct {
	Suite        string
	RuntimeClass string
	// Baseline marks a shared-kernel reference class (runc, the fake VM):
	// isolation specs must fail there, each for the shared-kernel fact it
	// declares, which proves they can fail.
	Baseline bool
	Cases    []Case
	// Err is set when the suite could not run or wrote no report.
	Err error
	// Log is the suite's full output.
	Log      string
	Duration time.Duration
	// Checked, when set, is the suite's own verdict on top of its cases
	// (critest: its differences from runc are all on the documented list).
	Checked *Check
	// Origin, when set, is the harness's check that the run's pod VMs came
	// from where the class says (a cache class: the VM cache), so that a
	// pass cannot come from pods that silently booted their own VMs. Its
	// failure is a failure of the run; the cases are judged as usual.
	Origin *Check
	// SpecOrigins, on a factory class, are each spec's pod VMs and where
	// they came from; a spec whose pod VMs do not let its result stand for
	// the class (every one booted where the factory should have served
	// it) is a failure of the run.
	SpecOrigins []SpecOrigin
}

// Check is a verdict a suite reaches itself.
type Check struct {
	OK     bool
	Detail string
}

// IsolationLabel marks specs that must fail on a shared kernel.
const IsolationLabel = "isolation"

// Unexpected is a case whose outcome is not the expected one, or a run
// that failed as a whole.
type Unexpected struct {
	Run     string
	Case    string
	Got     Outcome
	Want    Outcome
	Message string
	// Harness marks a failure that proves nothing about the runtime: an
	// isolation spec that failed on a baseline for another reason than the
	// shared-kernel fact it declares (a timeout, a broken probe).
	Harness bool
}

// What says what went wrong, for a verdict line.
func (u Unexpected) What() string {
	if u.Harness {
		return "harness error: " + string(u.Got) + " for another reason than the shared-kernel fact it declares"
	}
	return "got " + string(u.Got) + ", want " + string(u.Want)
}

// Skip is a case skipped where a pass is wanted: it proves nothing either
// way, so the verdict names it instead of counting it as a pass.
type Skip struct {
	Run, Case, Message string
}

// Report is the outcome of a whole conformance run.
type Report struct {
	Title   string
	Cluster string // e.g. "local (Kubernetes v1.37.2 from host processes)"
	Classes []string
	Runs    []Run
	// Comparisons set runs of one suite side by side against a baseline
	// run (the upstream node conformance suite against runc).
	Comparisons []Comparison
	Started     time.Time
	Elapsed     time.Duration
}

func (r Run) label() string {
	if r.RuntimeClass == "" {
		return r.Suite
	}
	return r.Suite + " [" + r.RuntimeClass + "]"
}

// Unexpected lists every result that is not what it should be, and every
// spec suite with isolation specs that ran on no shared-kernel baseline.
func (rep *Report) Unexpected() []Unexpected {
	out := rep.missingBaselines()
	for _, r := range rep.Runs {
		if r.Err != nil {
			out = append(out, Unexpected{Run: r.label(), Case: "(whole suite)", Got: Failed, Want: Passed, Message: r.Err.Error()})
			continue
		}
		if r.Origin != nil && !r.Origin.OK {
			out = append(out, Unexpected{Run: r.label(), Case: "(pod VMs' origin)", Got: Failed, Want: Passed, Message: r.Origin.Detail})
		}
		out = append(out, originUnexpected(r)...)
		if r.Checked != nil && !r.Checked.OK {
			out = append(out, Unexpected{Run: r.label(), Case: "(suite check)", Got: Failed, Want: Passed, Message: r.Checked.Detail})
		}
		if r.Checked != nil {
			continue // the suite's own check judged its cases
		}
		if len(r.Cases) == 0 {
			out = append(out, Unexpected{Run: r.label(), Case: "(whole suite)", Got: Missing, Want: Passed, Message: "no spec ran"})
		}
		for _, c := range r.Cases {
			j := r.Judge(c)
			if j.Kind == AsExpected || j.Kind == SkippedInstead {
				continue
			}
			out = append(out, Unexpected{Run: r.label(), Case: c.Name, Got: c.Outcome, Want: j.Want, Message: c.Message, Harness: j.Kind == HarnessError})
		}
	}
	return out
}

// Skips lists the cases skipped where a pass is wanted.
func (rep *Report) Skips() []Skip {
	var out []Skip
	for _, r := range rep.Runs {
		if r.Err != nil || r.Checked != nil {
			continue
		}
		for _, c := range r.Cases {
			if r.Judge(c).Kind == SkippedInstead {
				out = append(out, Skip{Run: r.label(), Case: c.Name, Message: c.Message})
			}
		}
	}
	return out
}

// missingBaselines finds the suites that ran isolation specs but on no
// baseline: without one nothing shows that those specs can fail.
func (rep *Report) missingBaselines() []Unexpected {
	isolation, baseline := map[string]bool{}, map[string]bool{}
	var suites []string
	for _, r := range rep.Runs {
		if r.Baseline {
			baseline[r.Suite] = true
		}
		for _, c := range r.Cases {
			if c.HasLabel(IsolationLabel) && !isolation[r.Suite] {
				isolation[r.Suite] = true
				suites = append(suites, r.Suite)
			}
		}
	}
	var out []Unexpected
	for _, s := range suites {
		if !baseline[s] {
			out = append(out, Unexpected{Run: s, Case: "(shared-kernel baseline)", Got: Missing, Want: Failed,
				Message: "isolation specs ran on no baseline class, so nothing shows they can fail"})
		}
	}
	return out
}

// OK tells whether every result is as expected.
func (rep *Report) OK() bool { return len(rep.Unexpected()) == 0 }

// WriteMarkdown writes the human report: the verdict, then one table per
// suite with a column per runtime class.
func (rep *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", rep.Title)
	fmt.Fprintf(&b, "- cluster: %s\n- runtime classes: %s\n- started %s, took %s\n\n",
		rep.Cluster, strings.Join(rep.Classes, ", "), rep.Started.UTC().Format(time.RFC3339), rep.Elapsed.Round(time.Second))
	writeVerdict(&b, rep.Unexpected(), rep.Skips())

	// Group runs by suite, keeping the order they ran in.
	var suites []string
	bySuite := map[string][]Run{}
	for _, r := range rep.Runs {
		if _, ok := bySuite[r.Suite]; !ok {
			suites = append(suites, r.Suite)
		}
		bySuite[r.Suite] = append(bySuite[r.Suite], r)
	}
	for _, s := range suites {
		writeSuite(&b, s, bySuite[s])
		for _, c := range rep.Comparisons {
			if c.Suite == s {
				c.WriteMarkdown(&b)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeVerdict writes the verdict line and what it rests on: every
// unexpected result, and every skip where a pass is wanted.
func writeVerdict(b *strings.Builder, unexpected []Unexpected, skips []Skip) {
	if len(unexpected) == 0 {
		b.WriteString("**Verdict: PASS**")
	} else {
		b.WriteString("**Verdict: FAIL**")
	}
	if len(skips) > 0 {
		fmt.Fprintf(b, " (%d skipped where a pass is wanted: not counted as passes)", len(skips))
	}
	if len(unexpected) == 0 {
		b.WriteString(": every result that ran is the expected one (isolation specs fail on the shared-kernel baselines for the fact each declares, and pass on the VM runtime classes).\n\n")
	} else {
		fmt.Fprintf(b, ": %d unexpected result(s):\n\n", len(unexpected))
		for _, u := range unexpected {
			fmt.Fprintf(b, "- %s: %s: %s", u.Run, u.Case, u.What())
			if u.Message != "" {
				fmt.Fprintf(b, ": %s", mdEscape(u.Message))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(skips) > 0 {
		b.WriteString("Skipped where a pass is wanted:\n\n")
		for _, s := range skips {
			fmt.Fprintf(b, "- %s: %s: %s\n", s.Run, s.Case, mdEscape(s.Message))
		}
		b.WriteString("\n")
	}
}

// writeCheck writes a check's line, if there is a check.
func writeCheck(b *strings.Builder, what string, c *Check) {
	if c == nil {
		return
	}
	state := "ok"
	if !c.OK {
		state = "FAILED"
	}
	fmt.Fprintf(b, "- %s %s: %s\n", what, state, mdEscape(c.Detail))
}

func writeSuite(b *strings.Builder, suite string, runs []Run) {
	fmt.Fprintf(b, "## %s\n\n", suite)
	for _, r := range runs {
		if r.Err != nil {
			fmt.Fprintf(b, "- %s did not complete: %s (log: %s)\n", r.label(), mdEscape(r.Err.Error()), r.Log)
		}
		writeCheck(b, r.label()+" check", r.Checked)
		writeCheck(b, r.label()+" pod VMs' origin", r.Origin)
		writeSpecOrigins(b, r)
	}
	if runs[0].Checked != nil {
		// Large upstream suites: counts per class, the full list is in the log.
		b.WriteString("\n| runtime class | passed | failed | skipped | took |\n| --- | --- | --- | --- | --- |\n")
		for _, r := range runs {
			n := map[Outcome]int{}
			for _, c := range r.Cases {
				n[c.Outcome]++
			}
			fmt.Fprintf(b, "| %s | %d | %d | %d | %s |\n", orDash(r.RuntimeClass), n[Passed], n[Failed], n[Skipped], r.Duration.Round(time.Second))
		}
		b.WriteString("\n")
		return
	}
	// One row per spec, one column per run.
	var names []string
	labels := map[string][]string{}
	cell := map[string]map[string]string{}
	for _, r := range runs {
		for _, c := range r.Cases {
			if _, ok := cell[c.Name]; !ok {
				names = append(names, c.Name)
				cell[c.Name] = map[string]string{}
				labels[c.Name] = c.Labels
			}
			text := cellText(r.Judge(c), c)
			text += fmt.Sprintf(" %.0fs", c.Seconds)
			cell[c.Name][r.label()] = text
		}
	}
	b.WriteString("\n| spec | labels |")
	for _, r := range runs {
		fmt.Fprintf(b, " %s |", orDash(r.RuntimeClass))
	}
	b.WriteString("\n| --- | --- |" + strings.Repeat(" --- |", len(runs)) + "\n")
	for _, n := range names {
		fmt.Fprintf(b, "| %s | %s |", mdEscape(n), strings.Join(labels[n], ", "))
		for _, r := range runs {
			v := cell[n][r.label()]
			if v == "" {
				v = "not run"
			}
			fmt.Fprintf(b, " %s |", v)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// cellText is a case's entry in the table: its outcome, and what it means
// where that is not a plain pass.
func cellText(j Judgement, c Case) string {
	text := string(c.Outcome)
	switch {
	case j.Kind == AsExpected && j.Want == Failed:
		text = "failed (expected)"
	case j.Kind == HarnessError:
		text = "**HARNESS ERROR** (failed, but not showing " + strings.Join(orFacts(c), " or ") + ")"
	case j.Kind == Wrong:
		text = "**" + strings.ToUpper(string(c.Outcome)) + "** (want " + string(j.Want) + ")"
	}
	if c.Outcome == Skipped && c.Message != "" {
		text += ": " + mdEscape(c.Message)
	}
	return text
}

func orFacts(c Case) []string {
	if f := c.Facts(); len(f) > 0 {
		return f
	}
	return []string{"a declared shared-kernel fact"}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

type junitOutFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

type junitOutSkipped struct {
	Message string `xml:"message,attr"`
}

type junitOutCase struct {
	Name      string           `xml:"name,attr"`
	Classname string           `xml:"classname,attr"`
	Time      float64          `xml:"time,attr"`
	Failure   *junitOutFailure `xml:"failure,omitempty"`
	Skipped   *junitOutSkipped `xml:"skipped,omitempty"`
}

// WriteJUnit writes one testsuite per run; a case fails when its outcome
// is not the expected one, so a CI system shows exactly the surprises.
func (rep *Report) WriteJUnit(w io.Writer) error {
	type ts struct {
		Name     string         `xml:"name,attr"`
		Tests    int            `xml:"tests,attr"`
		Failures int            `xml:"failures,attr"`
		Skipped  int            `xml:"skipped,attr"`
		Cases    []junitOutCase `xml:"testcase"`
	}
	type root struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []ts     `xml:"testsuite"`
	}
	var doc root
	for _, r := range rep.Runs {
		s := ts{Name: r.label()}
		add := func(c junitOutCase) {
			s.Cases = append(s.Cases, c)
			s.Tests++
			if c.Failure != nil {
				s.Failures++
			}
			if c.Skipped != nil {
				s.Skipped++
			}
		}
		if r.Err != nil {
			add(junitOutCase{Name: "suite completes", Classname: r.label(), Failure: &junitOutFailure{Message: r.Err.Error(), Text: "log: " + r.Log}})
		}
		for _, ck := range []struct {
			name string
			c    *Check
		}{{"suite check", r.Checked}, {"pod VMs' origin", r.Origin}} {
			if ck.c == nil {
				continue
			}
			c := junitOutCase{Name: ck.name, Classname: r.label()}
			if !ck.c.OK {
				c.Failure = &junitOutFailure{Message: ck.c.Detail}
			}
			add(c)
		}
		for _, c := range originJUnitCases(r) {
			add(c)
		}
		for _, c := range r.Cases {
			add(toJUnitCase(r, c))
		}
		doc.Suites = append(doc.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	return enc.Encode(doc)
}

// toJUnitCase is one case of a run as JUnit: failed when its outcome is not
// the expected one, skipped when it was skipped where a pass is wanted.
func toJUnitCase(r Run, c Case) junitOutCase {
	j := r.Judge(c)
	t := junitOutCase{Name: c.Name, Classname: r.label(), Time: c.Seconds}
	switch {
	case r.Checked != nil && c.Outcome == Failed:
		// Judged by the suite check; kept visible as skipped.
		t.Skipped = &junitOutSkipped{Message: "failed, judged by the suite check: " + c.Message}
	case j.Kind == AsExpected:
	case j.Kind == SkippedInstead:
		t.Skipped = &junitOutSkipped{Message: c.Message}
	case j.Kind == HarnessError:
		t.Failure = &junitOutFailure{Message: "harness error: failed for another reason than " + strings.Join(orFacts(c), " or "), Text: c.Message}
	default:
		msg := fmt.Sprintf("got %s, want %s", c.Outcome, j.Want)
		if j.Why != "" {
			msg += " (" + j.Why + ")"
		}
		t.Failure = &junitOutFailure{Message: msg, Text: c.Message}
	}
	return t
}
