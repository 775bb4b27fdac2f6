package result

import "github.com/podvm/podvm/bench/stats"

// Exec is the exec benchmark of `podvm bench startup`: CRI ExecSync of a
// command (`true`) in a running pod's container, as `crictl exec -s` and
// the kubelet's exec probes do, the handlers taking turns.
type Exec struct {
	// Runs is how many execs each handler was timed for.
	Runs     int           `json:"runs"`
	Command  []string      `json:"command"`
	Handlers []HandlerExec `json:"handlers"`
}

// HandlerExec is one handler's execs.
type HandlerExec struct {
	Handler     string        `json:"handler"`
	Runtime     string        `json:"runtime"`
	Accelerator string        `json:"accelerator,omitempty"`
	Time        stats.Summary `json:"time_ms"`
	// MedianRatioToRunc and P90RatioToRunc compare with runc's execs.
	MedianRatioToRunc float64   `json:"median_ratio_to_runc"`
	P90RatioToRunc    float64   `json:"p90_ratio_to_runc"`
	SamplesMs         []float64 `json:"samples_ms"`
	Failures          []string  `json:"failures"`
}
