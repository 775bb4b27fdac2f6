package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// PodVM is one pod VM a spec ran on, and where it came from.
type PodVM struct {
	Pod     string `json:"pod"`     // namespace/name
	Sandbox string `json:"sandbox"` // the CRI sandbox id
	// From is "cached" (taken from the VM cache), "cloned" (from a VM
	// template), "booted" (its own boot), or "unsaid" (ready, and the
	// shim's log does not say where it came from).
	From string `json:"from"`
	// Why is a booted VM's reason in short ("pool empty", "memory over the
	// cache's VM size", "clone failed", ...), Reason the shim's own words.
	Why    string `json:"why,omitempty"`
	Reason string `json:"reason,omitempty"`
	// ByDesign marks a VM booted because the factory does not serve such
	// a pod (another size than the cache's VMs): not a miss.
	ByDesign bool `json:"byDesign,omitempty"`
}

// SpecOrigin is where one spec's pod VMs came from on a factory class
// (cache or template), and whether its result can stand for that class.
type SpecOrigin struct {
	Spec   string  `json:"spec"`
	PodVMs []PodVM `json:"podVMs"`
	OK     bool    `json:"ok"`
	Detail string  `json:"detail"`
	// FirstRun is what the first run's pod VMs were, when the spec was
	// run again because of them; PodVMs, OK and Detail are the re-run's.
	FirstRun string `json:"firstRun,omitempty"`
}

// originUnexpected are a run's specs whose pod VMs do not let their
// result stand for the run's class.
func originUnexpected(r Run) []Unexpected {
	var out []Unexpected
	for _, so := range r.SpecOrigins {
		if !so.OK {
			out = append(out, Unexpected{Run: r.label(), Case: so.Spec + " (pod VMs' origin)", Got: Failed, Want: Passed, Message: so.Detail})
		}
	}
	return out
}

// writeSpecOrigins writes a run's per-spec origin lines, if it has any.
func writeSpecOrigins(b *strings.Builder, r Run) {
	if len(r.SpecOrigins) == 0 {
		return
	}
	fmt.Fprintf(b, "- %s pod VMs per spec:\n", r.label())
	for _, so := range r.SpecOrigins {
		state := "ok"
		if !so.OK {
			state = "**FAILED**"
		}
		fmt.Fprintf(b, "  - %s: %s: %s", mdEscape(so.Spec), state, mdEscape(so.Detail))
		if so.FirstRun != "" {
			fmt.Fprintf(b, " (re-run once; the first run's: %s)", mdEscape(so.FirstRun))
		}
		b.WriteString("\n")
	}
}

// originJUnitCases are a run's per-spec origin checks as JUnit cases.
func originJUnitCases(r Run) []junitOutCase {
	var out []junitOutCase
	for _, so := range r.SpecOrigins {
		c := junitOutCase{Name: "pod VMs' origin: " + so.Spec, Classname: r.label()}
		if !so.OK {
			c.Failure = &junitOutFailure{Message: so.Detail, Text: so.FirstRun}
		}
		out = append(out, c)
	}
	return out
}

// originRun is one run's entry in origin.json.
type originRun struct {
	Run          string       `json:"run"`
	RuntimeClass string       `json:"runtimeClass"`
	Total        *Check       `json:"total,omitempty"`
	Specs        []SpecOrigin `json:"specs"`
}

// HasOrigins tells whether any run has per-spec origins.
func (rep *Report) HasOrigins() bool {
	for _, r := range rep.Runs {
		if len(r.SpecOrigins) > 0 {
			return true
		}
	}
	return false
}

// WriteOriginJSON writes the per-spec origins of every run that has them,
// with the run's totals, as JSON (origin.json beside report.md).
func (rep *Report) WriteOriginJSON(w io.Writer) error {
	runs := []originRun{}
	for _, r := range rep.Runs {
		if len(r.SpecOrigins) == 0 {
			continue
		}
		runs = append(runs, originRun{Run: r.label(), RuntimeClass: r.RuntimeClass, Total: r.Origin, Specs: r.SpecOrigins})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(runs)
}
