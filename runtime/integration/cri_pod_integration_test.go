package integration

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCRIPodOOMAndStatsIntegration runs a podvm pod through CRI with two
// containers: one allocates past its 32 MiB limit and must be reported
// OOMKilled (exit 137) while the other keeps running in the same VM, and
// `crictl stats` of the survivor must carry the guest cgroup's figures.
func TestCRIPodOOMAndStatsIntegration(t *testing.T) {
	h := startCRIHarness(t)
	crictl := h.crictl
	podCfg := h.podConfig("oom-pod", nil)
	container := func(name string, limit int64, cmd ...string) string {
		var linux map[string]any
		if limit > 0 {
			linux = map[string]any{"resources": map[string]any{"memory_limit_in_bytes": limit}}
		}
		return h.containerConfig(name, linux, cmd...)
	}
	steadyCfg := container("steady", 0, "sh", "-c", "head -c 8m /dev/zero > /dev/shm/ballast; exec sleep 1000")
	hogCfg := container("hog", 32<<20, "sh", "-c", "sleep 2; exec dd if=/dev/zero of=/dev/null bs=128M count=1")

	pod := h.runPod(podCfg)
	steady := h.startContainer(pod, podCfg, steadyCfg)
	hog := h.startContainer(pod, podCfg, hogCfg)

	inspect := h.inspect
	deadline := time.Now().Add(90 * time.Second)
	var hs criContainerStatus
	for hs = inspect(hog); hs.Status.State != "CONTAINER_EXITED"; hs = inspect(hog) {
		if time.Now().After(deadline) {
			t.Fatalf("hog still %s after 90s", hs.Status.State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if hs.Status.Reason != "OOMKilled" || hs.Status.ExitCode != 137 {
		t.Errorf("hog ended with reason %q, exit %d; want OOMKilled, 137", hs.Status.Reason, hs.Status.ExitCode)
	}
	if s := inspect(steady); s.Status.State != "CONTAINER_RUNNING" {
		t.Errorf("the pod's other container is %s after the OOM kill, want CONTAINER_RUNNING", s.Status.State)
	}
	if got := crictl("exec", steady, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
		t.Errorf("the surviving container runs on kernel %q, not podvm's guest kernel", got)
	}

	// The survivor's memory includes 8 MiB of tmpfs ballast charged to its
	// guest cgroup; the host never sees that cgroup.
	var stats struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct {
					Value string `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
			CPU struct {
				UsageCoreNanoSeconds struct {
					Value string `json:"value"`
				} `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
		} `json:"stats"`
	}
	out := crictl("stats", "-o", "json", "--id", steady)
	if err := json.Unmarshal([]byte(out), &stats); err != nil || len(stats.Stats) != 1 {
		t.Fatalf("crictl stats: %v\n%s", err, out)
	}
	ws, _ := strconv.ParseUint(stats.Stats[0].Memory.WorkingSetBytes.Value, 10, 64)
	cpu, _ := strconv.ParseUint(stats.Stats[0].CPU.UsageCoreNanoSeconds.Value, 10, 64)
	if ws < 8<<20 || cpu == 0 {
		t.Errorf("crictl stats of the survivor: working set %d bytes (want at least the 8 MiB ballast), cpu %d ns\n%s", ws, cpu, out)
	}
	t.Logf("survivor: working set %s, cpu %s ns (guest cgroup)", fmt.Sprint(ws), fmt.Sprint(cpu))
}
