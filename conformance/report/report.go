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
	// Baseline marks the reference class (runc): isolation specs must fail
	// there, which proves they can fail.
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
}

// Check is a verdict a suite reaches itself.
type Check struct {
	OK     bool
	Detail string
}

// IsolationLabel marks specs that must fail on a shared kernel.
const IsolationLabel = "isolation"

// Expected is the outcome a case should have in this run, and why.
func (r Run) Expected(c Case) (Outcome, string) {
	if r.Baseline && c.HasLabel(IsolationLabel) {
		return Failed, "isolation spec on the shared-kernel baseline: must fail"
	}
	return Passed, ""
}

// Unexpected is a case whose outcome is not the expected one, or a run
// that failed as a whole.
type Unexpected struct {
	Run     string
	Case    string
	Got     Outcome
	Want    Outcome
	Message string
}

// Report is the outcome of a whole conformance run.
type Report struct {
	Title   string
	Cluster string // e.g. "local (Kubernetes v1.37.2 from host processes)"
	Classes []string
	Runs    []Run
	Started time.Time
	Elapsed time.Duration
}

func (r Run) label() string {
	if r.RuntimeClass == "" {
		return r.Suite
	}
	return r.Suite + " [" + r.RuntimeClass + "]"
}

// Unexpected lists every result that is not what it should be. A skip is
// acceptable where a pass is wanted (it is shown with its reason), never
// where a failure is wanted.
func (rep *Report) Unexpected() []Unexpected {
	var out []Unexpected
	for _, r := range rep.Runs {
		if r.Err != nil {
			out = append(out, Unexpected{Run: r.label(), Case: "(whole suite)", Got: Failed, Want: Passed, Message: r.Err.Error()})
			continue
		}
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
			want, _ := r.Expected(c)
			if c.Outcome == want || (want == Passed && c.Outcome == Skipped) {
				continue
			}
			out = append(out, Unexpected{Run: r.label(), Case: c.Name, Got: c.Outcome, Want: want, Message: c.Message})
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
	unexpected := rep.Unexpected()
	if len(unexpected) == 0 {
		b.WriteString("**Verdict: PASS**: every result is the expected one (isolation specs fail on the shared-kernel baseline and pass on the VM runtime classes).\n\n")
	} else {
		fmt.Fprintf(&b, "**Verdict: FAIL**: %d unexpected result(s):\n\n", len(unexpected))
		for _, u := range unexpected {
			fmt.Fprintf(&b, "- %s: %s: got %s, want %s", u.Run, u.Case, u.Got, u.Want)
			if u.Message != "" {
				fmt.Fprintf(&b, ": %s", mdEscape(u.Message))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

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
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSuite(b *strings.Builder, suite string, runs []Run) {
	fmt.Fprintf(b, "## %s\n\n", suite)
	for _, r := range runs {
		if r.Err != nil {
			fmt.Fprintf(b, "- %s did not complete: %s (log: %s)\n", r.label(), mdEscape(r.Err.Error()), r.Log)
		}
		if r.Checked != nil {
			state := "ok"
			if !r.Checked.OK {
				state = "FAILED"
			}
			fmt.Fprintf(b, "- %s check %s: %s\n", r.label(), state, mdEscape(r.Checked.Detail))
		}
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
			want, _ := r.Expected(c)
			text := string(c.Outcome)
			if c.Outcome == want && want == Failed {
				text = "failed (expected)"
			} else if c.Outcome != want && !(want == Passed && c.Outcome == Skipped) {
				text = "**" + strings.ToUpper(string(c.Outcome)) + "** (want " + string(want) + ")"
			}
			if c.Outcome == Skipped && c.Message != "" {
				text += ": " + mdEscape(c.Message)
			}
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// WriteJUnit writes one testsuite per run; a case fails when its outcome
// is not the expected one, so a CI system shows exactly the surprises.
func (rep *Report) WriteJUnit(w io.Writer) error {
	type failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type skipped struct {
		Message string `xml:"message,attr"`
	}
	type tc struct {
		Name      string   `xml:"name,attr"`
		Classname string   `xml:"classname,attr"`
		Time      float64  `xml:"time,attr"`
		Failure   *failure `xml:"failure,omitempty"`
		Skipped   *skipped `xml:"skipped,omitempty"`
	}
	type ts struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Cases    []tc   `xml:"testcase"`
	}
	type root struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []ts     `xml:"testsuite"`
	}
	var doc root
	for _, r := range rep.Runs {
		s := ts{Name: r.label()}
		add := func(c tc) {
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
			add(tc{Name: "suite completes", Classname: r.label(), Failure: &failure{Message: r.Err.Error(), Text: "log: " + r.Log}})
		}
		if r.Checked != nil {
			c := tc{Name: "suite check", Classname: r.label()}
			if !r.Checked.OK {
				c.Failure = &failure{Message: r.Checked.Detail}
			}
			add(c)
		}
		for _, c := range r.Cases {
			want, why := r.Expected(c)
			t := tc{Name: c.Name, Classname: r.label(), Time: c.Seconds}
			switch {
			case r.Checked != nil && c.Outcome == Failed:
				// Judged by the suite check; kept visible as skipped.
				t.Skipped = &skipped{Message: "failed, judged by the suite check: " + c.Message}
			case c.Outcome == want:
			case want == Passed && c.Outcome == Skipped:
				t.Skipped = &skipped{Message: c.Message}
			default:
				msg := fmt.Sprintf("got %s, want %s", c.Outcome, want)
				if why != "" {
					msg += " (" + why + ")"
				}
				t.Failure = &failure{Message: msg, Text: c.Message}
			}
			add(t)
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
