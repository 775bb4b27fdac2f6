// Package result is the schema of `podvm bench`'s results.json, documented
// field by field in docs/benchmarks.md. The schema is stable: fields are
// added, never renamed or given another meaning; a change that cannot be
// made that way gets a new Schema string. Every duration is in
// milliseconds and every memory size in MiB (2^20 bytes), as the field
// names say (_ms, _mib).
package result

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Schema names this version of the format.
const Schema = "podvm-bench/v1"

// Results is one `podvm bench` run: the host it ran on and whichever of the
// benchmarks were run.
type Results struct {
	Schema     string    `json:"schema"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Host       Host      `json:"host"`
	Boot       *Boot     `json:"boot,omitempty"`
	Startup    *Startup  `json:"startup,omitempty"`
	Density    *Density  `json:"density,omitempty"`
	Exec       *Exec     `json:"exec,omitempty"`
	Probe      *Probe    `json:"probe,omitempty"`
	Factory    *Factory  `json:"factory,omitempty"`
	// Targets are the goals, each with the figure measured for it.
	Targets []Target `json:"targets"`
	// Leaks lists what the run left on the host (processes, mounts,
	// interfaces, leases, cgroups); empty when it cleaned up after itself.
	Leaks []string `json:"leaks"`
}

// Host describes the machine and the software measured.
type Host struct {
	Kernel    string  `json:"kernel"`
	CPUs      int     `json:"cpus"`
	MemoryMiB float64 `json:"memory_mib"`
	CPUModel  string  `json:"cpu_model"`
	// Accelerator is what podvm's probe chose for this host ("kvm" or
	// "tcg"), with its reason; each VM's own choice is in the
	// benchmarks' samples.
	Accelerator       string   `json:"accelerator"`
	AcceleratorReason string   `json:"accelerator_reason"`
	Versions          Versions `json:"versions"`
	VM                VM       `json:"vm"`
}

// Versions of the software measured.
type Versions struct {
	Podvm      string `json:"podvm"`
	QEMU       string `json:"qemu"`
	Containerd string `json:"containerd"`
	Runc       string `json:"runc"`
	// Runsc is empty when gVisor was not measured.
	Runsc string `json:"runsc,omitempty"`
}

// VM is the pod VM configuration the figures are for.
type VM struct {
	VCPUs     int    `json:"vcpus"`
	MemoryMiB int    `json:"memory_mib"`
	TBSizeMiB int    `json:"tb_size_mib"`
	SharedFS  string `json:"shared_fs"`
	Kernel    string `json:"guest_kernel"`
}

// Target is one goal of the benchmarks with the figure measured for it.
type Target struct {
	Name string `json:"name"`
	// Goal is the target as written ("<= 500 ms").
	Goal string `json:"goal"`
	// Measured is the figure, with its unit and conditions.
	Measured string `json:"measured"`
	// Status: "met", "missed", or "reported" for targets that are a
	// figure to report rather than a bound to meet, and "not measured".
	Status string `json:"status"`
}

// Target statuses.
const (
	TargetMet         = "met"
	TargetMissed      = "missed"
	TargetReported    = "reported"
	TargetNotMeasured = "not measured"
)

// Write writes r as indented JSON.
func Write(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads a results file and checks its schema.
func Read(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("%s: schema %q, this podvm reads %q", path, r.Schema, Schema)
	}
	return &r, nil
}

// Ms converts a duration to milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MiB converts KiB to MiB.
func MiB(kb uint64) float64 { return float64(kb) / 1024 }

// Factory is which podvm factory modes (docs/factory.md) the run measured,
// each as a CRI handler of its own, and the first pod of each mode that
// saves a VM template, timed before every benchmark and kept out of them.
type Factory struct {
	// Handlers maps each podvm handler to its factory mode.
	Handlers  map[string]string `json:"handlers"`
	FirstPods []FirstPod        `json:"first_pods"`
}

// FirstPod is the pod whose start saved a handler's VM template.
type FirstPod struct {
	Handler         string  `json:"handler"`
	ToFirstOutputMs float64 `json:"to_first_output_ms"`
	Error           string  `json:"error,omitempty"`
}
