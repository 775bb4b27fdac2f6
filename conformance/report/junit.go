// Package report reads the JUnit XML that each conformance suite writes
// (Ginkgo's, critest's, the upstream e2e suite's) and turns the results of
// every suite and runtime class into one verdict: a table of spec x runtime
// class, in Markdown for people and JUnit for CI systems.
package report

import (
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Outcome of one spec in one run.
type Outcome string

const (
	Passed  Outcome = "passed"
	Failed  Outcome = "failed"
	Skipped Outcome = "skipped"
	Missing Outcome = "missing" // the spec did not run at all
)

// Case is one spec's result.
type Case struct {
	Name    string
	Labels  []string
	Outcome Outcome
	Message string // failure or skip message, first line
	Seconds float64
}

type junitSuites struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure"`
	Error     *junitMessage `xml:"error"`
	Skipped   *junitMessage `xml:"skipped"`
	SystemErr string        `xml:"system-err"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// Ginkgo names a case "[It] container text spec text [label1, label2]";
// setup nodes are "[BeforeSuite]", "[SynchronizedAfterSuite]" and such.
var (
	trailingLabels = regexp.MustCompile(`\s\[([^\[\]]+)\]$`)
	setupNode      = regexp.MustCompile(`^\[(BeforeSuite|AfterSuite|SynchronizedBeforeSuite|SynchronizedAfterSuite|ReportBeforeSuite|ReportAfterSuite|DeferCleanup.*)\]`)
)

// ReadJUnit parses a JUnit XML file into cases. Ginkgo's suite-level setup
// nodes are kept only when they failed (a failed BeforeSuite fails the run).
func ReadJUnit(path string) ([]Case, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc junitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		// Some writers emit a bare <testsuite>.
		var one junitSuite
		if err2 := xml.Unmarshal(b, &one); err2 != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		doc.Suites = []junitSuite{one}
	}
	var out []Case
	for _, s := range doc.Suites {
		for _, jc := range s.Cases {
			c := Case{Name: jc.Name, Seconds: jc.Time, Outcome: Passed}
			switch {
			case jc.Failure != nil:
				c.Outcome, c.Message = Failed, firstLine(jc.Failure.Message, jc.Failure.Text)
			case jc.Error != nil:
				c.Outcome, c.Message = Failed, firstLine(jc.Error.Message, jc.Error.Text)
			case jc.Skipped != nil:
				c.Outcome, c.Message = Skipped, firstLine(jc.Skipped.Message, jc.Skipped.Text)
			}
			if setupNode.MatchString(c.Name) && c.Outcome != Failed {
				continue
			}
			if m := trailingLabels.FindStringSubmatch(c.Name); m != nil {
				for _, l := range strings.Split(m[1], ",") {
					c.Labels = append(c.Labels, strings.TrimSpace(l))
				}
				c.Name = strings.TrimSpace(strings.TrimSuffix(c.Name, m[0]))
			}
			c.Name = strings.TrimPrefix(c.Name, "[It] ")
			out = append(out, c)
		}
	}
	return out, nil
}

// HasLabel tells whether the case carries label.
func (c Case) HasLabel(label string) bool {
	for _, l := range c.Labels {
		if l == label {
			return true
		}
	}
	return false
}

func firstLine(parts ...string) string {
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if i := strings.IndexByte(p, '\n'); i >= 0 {
			p = p[:i]
		}
		const max = 200
		if len(p) > max {
			p = p[:max] + "..."
		}
		return p
	}
	return ""
}
