package result

import "github.com/podvm/podvm/bench/stats"

// CPUUse is where the host's CPU time went while a handler's pods started
// (from their first RunPodSandbox to the last one's output; for serial
// pods each pod's own window, added), by component (bench/benchhost
// CPUComponents), from /proc's CPU times of every process and /proc/stat.
type CPUUse struct {
	// Pods is how many pods started in the windows.
	Pods int `json:"pods"`
	// WindowMs is the windows' length (added over the serial pods).
	WindowMs float64 `json:"window_ms"`
	// Components are in bench/benchhost's order, idle last.
	Components []CPUComponent `json:"components"`
}

// CPUComponent is one component's CPU time over the windows.
type CPUComponent struct {
	Name string `json:"name"`
	// Seconds is CPU seconds over all CPUs; PerPodSeconds is that over
	// Pods.
	Seconds       float64 `json:"cpu_s"`
	PerPodSeconds float64 `json:"per_pod_cpu_s"`
}

// StartStep is one step of a pod's start, between two marks on the
// host's clock (the CRI calls' returns, and the shims' log lines for
// podvm handlers), over the pods.
type StartStep struct {
	From     string        `json:"from"`
	To       string        `json:"to"`
	Duration stats.Summary `json:"duration_ms"`
}
