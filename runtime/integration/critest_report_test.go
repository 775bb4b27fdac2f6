package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// critestRun is one finished critest run: every spec's outcome by name.
type critestRun struct {
	Handler  string
	Specs    map[string]string // full spec name -> passed, failed, skipped, ...
	Failures map[string]string // full spec name -> first line of the failure
	Duration time.Duration
	Dir      string // report.json, junit.xml and critest.log
}

// ginkgoReport is the part of Ginkgo's JSON report (-ginkgo.json-report)
// read here.
type ginkgoReport []struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		Failure                 *struct{ Message string }
	}
}

// readCritestReport loads the specs of a Ginkgo JSON report. Suite-level
// nodes (BeforeSuite and the like) count only when they failed, since
// then no spec ran.
func readCritestReport(path string) (specs, failures map[string]string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var rep ginkgoReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", path, err)
	}
	specs, failures = map[string]string{}, map[string]string{}
	for _, suite := range rep {
		for _, s := range suite.SpecReports {
			name := strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			if s.LeafNodeType != "It" {
				if s.State == "passed" || s.State == "skipped" {
					continue
				}
				name = "[" + s.LeafNodeType + "] " + name
			}
			specs[name] = s.State
			if s.Failure != nil && s.State != "passed" && s.State != "skipped" {
				msg, _, _ := strings.Cut(strings.TrimSpace(s.Failure.Message), "\n")
				failures[name] = msg
			}
		}
	}
	return specs, failures, nil
}

// counts is "N passed, N failed, N skipped" (failed counts every failure
// state: failed, panicked, timedout, interrupted, aborted).
func (r *critestRun) counts() (passed, failed, skipped int) {
	for _, st := range r.Specs {
		switch st {
		case "passed":
			passed++
		case "skipped", "pending":
			skipped++
		default:
			failed++
		}
	}
	return
}

func (r *critestRun) summary() string {
	p, f, s := r.counts()
	return fmt.Sprintf("%s: %d passed, %d failed, %d skipped in %s (reports in %s)",
		r.Handler, p, f, s, r.Duration.Round(time.Second), r.Dir)
}

func (r *critestRun) failed(name string) bool {
	st, ok := r.Specs[name]
	return ok && st != "passed" && st != "skipped" && st != "pending"
}

// knownDifference is a spec listed in docs/critest.md, with the section
// and feature heading it is listed under.
type knownDifference struct {
	Section, Feature string
}

var knownItem = regexp.MustCompile("^- `([^`]+)`")

// readKnownDifferences reads the spec lists of docs/critest.md: every
// bullet that starts with a spec name in backquotes, under "## " sections
// and "### " feature headings.
func readKnownDifferences(path string) (map[string]knownDifference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]knownDifference{}
	var cur knownDifference
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			cur = knownDifference{Section: strings.TrimPrefix(line, "## ")}
		case strings.HasPrefix(line, "### "):
			cur.Feature = strings.TrimPrefix(line, "### ")
		default:
			if m := knownItem.FindStringSubmatch(line); m != nil {
				if _, dup := out[m[1]]; dup {
					return nil, fmt.Errorf("%s: %q listed twice", path, m[1])
				}
				out[m[1]] = cur
			}
		}
	}
	return out, sc.Err()
}

// comparison is podvm's run set against runc's and the documented list.
type comparison struct {
	// RegressedVsRunc passed with runc, did not pass with podvm.
	RegressedVsRunc []string
	// Unexpected failed with podvm, or was skipped with podvm but passed
	// with runc, and is not in docs/critest.md.
	Unexpected []string
	// NowPassing is in docs/critest.md but passed with podvm.
	NowPassing []string
	// Missing is in docs/critest.md but critest has no such spec.
	Missing []string
}

func compare(runc, podvm *critestRun, known map[string]knownDifference) comparison {
	var c comparison
	for name, st := range podvm.Specs {
		_, listed := known[name]
		regressed := runc != nil && runc.Specs[name] == "passed" && st != "passed"
		if regressed {
			c.RegressedVsRunc = append(c.RegressedVsRunc, name)
		}
		if (podvm.failed(name) || regressed) && !listed {
			c.Unexpected = append(c.Unexpected, name)
		}
		if st == "passed" && listed {
			c.NowPassing = append(c.NowPassing, name)
		}
	}
	for name := range known {
		if _, ok := podvm.Specs[name]; !ok {
			c.Missing = append(c.Missing, name)
		}
	}
	for _, l := range [][]string{c.RegressedVsRunc, c.Unexpected, c.NowPassing, c.Missing} {
		sort.Strings(l)
	}
	return c
}
