package result

import "github.com/podvm/podvm/bench/stats"

// Startup is `podvm bench startup`: a pod sandbox and one container through
// CRI (RunPodSandbox, CreateContainer, StartContainer) until the
// container's first line of output is in its CRI log, for each handler in
// the same run: one pod at a time, then N at once.
type Startup struct {
	Serial   []HandlerStartup  `json:"serial"`
	Parallel []HandlerParallel `json:"parallel"`
}

// HandlerStartup is one handler's serial runs.
type HandlerStartup struct {
	Handler     string `json:"handler"`
	Runtime     string `json:"runtime"`
	Accelerator string `json:"accelerator,omitempty"`
	Runs        int    `json:"runs"`
	// ToFirstOutput is the whole: RunPodSandbox called to output seen.
	ToFirstOutput   stats.Summary `json:"to_first_output_ms"`
	RunPodSandbox   stats.Summary `json:"run_pod_sandbox_ms"`
	CreateContainer stats.Summary `json:"create_container_ms"`
	StartContainer  stats.Summary `json:"start_container_ms"`
	// Output is from StartContainer's return to the output seen.
	Output            stats.Summary `json:"output_ms"`
	MedianRatioToRunc float64       `json:"median_ratio_to_runc"`
	SamplesMs         []float64     `json:"samples_ms"`
	Failures          []string      `json:"failures"`
	// VMs are the pods' VM starts (podvm handlers only).
	VMs *PodVMStarts `json:"vms,omitempty"`
	// CPU is where the host's CPU time went while the pods started.
	CPU *CPUUse `json:"cpu,omitempty"`
	// Steps are the pods' starts step by step.
	Steps []StartStep `json:"steps,omitempty"`
}

// HandlerParallel is one handler's pods started all at once.
type HandlerParallel struct {
	Handler     string `json:"handler"`
	Runtime     string `json:"runtime"`
	Accelerator string `json:"accelerator,omitempty"`
	Pods        int    `json:"pods"`
	// WallMs is from the first RunPodSandbox to the last pod's output.
	WallMs float64 `json:"wall_ms"`
	// ToFirstOutput summarizes each pod's own time.
	ToFirstOutput stats.Summary `json:"to_first_output_ms"`
	// WallRatioToRunc and MedianRatioToRunc compare with runc's batch.
	WallRatioToRunc   float64   `json:"wall_ratio_to_runc"`
	MedianRatioToRunc float64   `json:"median_ratio_to_runc"`
	SamplesMs         []float64 `json:"samples_ms"`
	Failures          []string  `json:"failures"`
	// VMs are the pods' VM starts (podvm handlers only).
	VMs *PodVMStarts `json:"vms,omitempty"`
	// CPU is where the host's CPU time went while the pods started.
	CPU *CPUUse `json:"cpu,omitempty"`
	// Steps are the pods' starts step by step.
	Steps []StartStep `json:"steps,omitempty"`
}

// PodVMStarts are a podvm handler's VM starts in a set of pods, from the
// shims' log lines.
type PodVMStarts struct {
	// FactoryMode is the handler's factory.mode (docs/factory.md).
	FactoryMode string `json:"factory_mode"`
	// VMMSpawnToAgentReady is from the VMM's spawn to the shim's first
	// answer from the agent (host clock), per pod VM.
	VMMSpawnToAgentReady stats.Summary `json:"vmm_spawn_to_agent_ready_ms"`
	// Cloned counts VMs the factory gave (cloned from a VM template, or
	// taken from the VM cache); Fallbacks those booted because it failed
	// (FirstFallback says why).
	Cloned        int    `json:"cloned"`
	Fallbacks     int    `json:"fallbacks"`
	FirstFallback string `json:"first_fallback,omitempty"`
	// Creates are the guest's container creates in each pod VM, in order:
	// the pause container's (the VM's first create) and the app
	// container's (its second), from the agent's marks.
	Creates []GuestCreate `json:"creates,omitempty"`
}

// GuestCreate is one container's create and start in the guest, over a
// set of pod VMs, from the agent's marks (guest clock).
type GuestCreate struct {
	// Container is "pause" or "app".
	Container string `json:"container"`
	// OCICreate is the runtime's create (bundle written to created).
	OCICreate stats.Summary `json:"oci_create_ms"`
	// CreateStart is the agent's CreateContainer and StartContainer,
	// each from its arrival to its answer, without the host's work
	// between the two calls.
	CreateStart stats.Summary `json:"create_start_ms"`
}
