package result

import "github.com/podvm/podvm/bench/stats"

// Probe is the probe benchmark of `podvm bench startup`: HTTP GETs from
// the host to a pod's web server through the pod network, as the
// kubelet's HTTP probes reach a pod, with the host idle and then while
// other pods of the same handler start and busy-loop.
type Probe struct {
	// Requests is how many GETs each handler's idle and busy phases make.
	Requests int `json:"requests"`
	// IntervalMs is the pause between one GET's end and the next.
	IntervalMs float64 `json:"interval_ms"`
	// LoadPods is how many pods make the load.
	LoadPods int `json:"load_pods"`
	// TimeoutMs bounds one GET; a GET over KubeletTimeoutMs would have
	// failed a kubelet probe with the default timeoutSeconds.
	TimeoutMs        float64        `json:"timeout_ms"`
	KubeletTimeoutMs float64        `json:"kubelet_timeout_ms"`
	Handlers         []HandlerProbe `json:"handlers"`
}

// Probe phases, in the order they run.
const (
	ProbeIdle     = "idle"
	ProbeLoadBoot = "load_boot"
	ProbeLoadBusy = "load_busy"
)

// HandlerProbe is one handler's probes, phase by phase.
type HandlerProbe struct {
	Handler     string       `json:"handler"`
	Runtime     string       `json:"runtime"`
	Accelerator string       `json:"accelerator,omitempty"`
	Phases      []ProbePhase `json:"phases"`
	// Failures are the set-up's (a pod that did not start); each GET's
	// are in its phase.
	Failures []string `json:"failures"`
}

// ProbePhase is the GETs of one phase.
type ProbePhase struct {
	Name string `json:"name"`
	// Ping is an ICMP echo's round trip just before each GET.
	Ping stats.Summary `json:"ping_ms"`
	// Connect is the TCP handshake (tap, virtio-net and the guest's
	// kernel answer it; no process in the pod has to run), Response the
	// whole GET from dial to the response read.
	Connect  stats.Summary `json:"connect_ms"`
	Response stats.Summary `json:"response_ms"`
	// OverKubeletTimeout counts GETs slower than KubeletTimeoutMs.
	OverKubeletTimeout int `json:"over_kubelet_timeout"`
	// MedianRatioToRunc and P90RatioToRunc compare Response with runc's
	// in the same phase.
	MedianRatioToRunc float64   `json:"median_ratio_to_runc"`
	P90RatioToRunc    float64   `json:"p90_ratio_to_runc"`
	SamplesMs         []float64 `json:"samples_ms"`
	Failures          []string  `json:"failures"`
}
