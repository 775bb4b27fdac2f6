package result

// Exec is the exec benchmark of `podvm bench startup`: CRI ExecSync of a
// command (`true`) in a running pod's container, as `crictl exec -s` and
// the kubelet's exec probes do, the handlers taking turns.
type Exec struct {
	// Runs is how many execs each handler was timed for.
	Runs     int           `json:"runs"`
	Command  []string      `json:"command"`
	Handlers []HandlerExec `json:"handlers"`
}

// HandlerExec is one handler's execs: its times and their median's
// ratio to runc's (HandlerTimes), the accelerator and the p90's ratio.
type HandlerExec struct {
	HandlerTimes
	Accelerator    string  `json:"accelerator,omitempty"`
	P90RatioToRunc float64 `json:"p90_ratio_to_runc"`
	// Phases split podvm's execs by the shim's and the agent's marks
	// (docs/benchmarks.md, "Exec"); absent when the shims did not log
	// them (debug level) and for other handlers.
	Phases []Phase `json:"phases,omitempty"`
}
