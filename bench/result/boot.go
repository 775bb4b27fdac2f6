package result

import "github.com/podvm/podvm/bench/stats"

// Boot is `podvm bench boot`: the phases of one pod VM's start, measured
// on every run of `ctr run --rm` of a container that prints one line, and
// `ctr run --rm ... true` timed for podvm beside runc (and gVisor).
type Boot struct {
	Runs int `json:"runs"`
	// Phases in the order they happen, each summarized over the runs.
	Phases []Phase `json:"phases"`
	// ContainerPhases split the container_create_start phase by the
	// agent's marks (guest spec rewrite, OCI runtime create and start, and
	// the calls' way there and back); empty with an agent that sends none.
	ContainerPhases []Phase `json:"container_phases,omitempty"`
	// TeardownPhases split the output_to_exit phase (`--rm`'s teardown)
	// by the shim's marks, then the VM's destroy by its steps; empty with
	// a shim that logs none.
	TeardownPhases []Phase `json:"teardown_phases,omitempty"`
	// BootToAgentReady is from the VMM's spawn to the shim's first answer
	// from the agent (host clock), the figure the boot target is about.
	BootToAgentReady stats.Summary `json:"boot_to_agent_ready_ms"`
	// GuestBootToAgentReady is the same end seen from the guest: its
	// kernel's start (CLOCK_BOOTTIME 0) to the agent serving.
	GuestBootToAgentReady stats.Summary `json:"guest_boot_to_agent_ready_ms"`
	// ToFirstOutput is from `ctr run` to the container's first byte of
	// output reaching ctr's stdout.
	ToFirstOutput stats.Summary `json:"to_first_output_ms"`
	Samples       []BootSample  `json:"samples"`
	// CtrRunTrue is `ctr run --rm IMAGE ID true`, whole, per handler.
	CtrRunTrue []HandlerTimes `json:"ctr_run_true"`
}

// Phase is the time from one mark to the next.
type Phase struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
	// Clock: "host" when both marks are host timestamps, "guest" when both
	// are the guest's, "mapped" when one is a guest time placed on the
	// host's timeline.
	Clock    string        `json:"clock"`
	Duration stats.Summary `json:"duration_ms"`
}

// BootSample is one run: each mark in ms since `ctr run` was started
// (names in Marks order, see docs/benchmarks.md).
type BootSample struct {
	Accelerator string             `json:"accelerator"`
	Transport   string             `json:"transport"`
	Marks       map[string]float64 `json:"marks_ms"`
	// TotalMs is until `ctr run --rm` exited (container and VM removed).
	TotalMs float64 `json:"total_ms"`
}

// HandlerTimes is one runtime handler's timings of the same work.
type HandlerTimes struct {
	Handler string `json:"handler"`
	// Runtime is what ran: "podvm", "runc" or "runsc (gVisor)".
	Runtime string        `json:"runtime"`
	Time    stats.Summary `json:"time_ms"`
	// MedianRatioToRunc is this handler's median over runc's (1 for runc).
	MedianRatioToRunc float64   `json:"median_ratio_to_runc"`
	SamplesMs         []float64 `json:"samples_ms"`
	Failures          []string  `json:"failures"`
}
