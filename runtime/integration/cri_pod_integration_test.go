package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/integration/testenv"
	"github.com/podvm/podvm/runtime/integration/testregistry"
)

// criBusybox is a busybox image the test registry serves under the name
// critest uses.
const criBusybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// TestCRIPodOOMAndStatsIntegration runs a podvm pod through CRI with two
// containers: one allocates past its 32 MiB limit and must be reported
// OOMKilled (exit 137) while the other keeps running in the same VM, and
// `crictl stats` of the survivor must carry the guest cgroup's figures.
func TestCRIPodOOMAndStatsIntegration(t *testing.T) {
	env := testenv.Require(t)
	tools := testenv.RequireCRI(t)
	dir := t.TempDir()
	certsDir := startCritestRegistry(t, env, dir)
	network := testenv.StartBridgeNetwork(t, filepath.Join(dir, "cni"), tools.CNIBinDir)
	c := testenv.StartCRIContainerd(t, env, testenv.CRIConfig{
		Tools: tools, RegistryConfigPath: certsDir, SandboxImage: testregistry.SandboxImage, Network: network,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	crictl := func(args ...string) string {
		t.Helper()
		r := c.Crictl(ctx, args...)
		if r.ExitCode != 0 {
			t.Fatalf("crictl %s: exit %d\n%s%s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	writeJSON := func(name string, v any) string {
		b, _ := json.Marshal(v)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	podCfg := writeJSON("pod.json", map[string]any{
		"metadata":      map[string]string{"name": "oom-pod", "namespace": "podvm-test", "uid": "oom-pod-uid"},
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{},
	})
	container := func(name string, limit int64, cmd ...string) string {
		c := map[string]any{
			"metadata": map[string]string{"name": name},
			"image":    map[string]string{"image": criBusybox},
			"command":  cmd,
			"log_path": name + ".log",
			"linux":    map[string]any{},
		}
		if limit > 0 {
			c["linux"] = map[string]any{"resources": map[string]any{"memory_limit_in_bytes": limit}}
		}
		return writeJSON(name+".json", c)
	}
	steadyCfg := container("steady", 0, "sh", "-c", "head -c 8m /dev/zero > /dev/shm/ballast; exec sleep 1000")
	hogCfg := container("hog", 32<<20, "sh", "-c", "sleep 2; exec dd if=/dev/zero of=/dev/null bs=128M count=1")

	crictl("pull", criBusybox)
	pod := crictl("runp", "--runtime", "podvm", podCfg)
	t.Cleanup(func() {
		c.Crictl(context.Background(), "stopp", pod)
		c.Crictl(context.Background(), "rmp", "-f", pod)
		assertNoLeaks(t, pod)
	})
	steady := crictl("create", pod, steadyCfg, podCfg)
	crictl("start", steady)
	hog := crictl("create", pod, hogCfg, podCfg)
	crictl("start", hog)

	type status struct {
		Status struct {
			State    string `json:"state"`
			Reason   string `json:"reason"`
			ExitCode int    `json:"exitCode"`
		} `json:"status"`
	}
	inspect := func(id string) status {
		var s status
		if err := json.Unmarshal([]byte(crictl("inspect", "-o", "json", id)), &s); err != nil {
			t.Fatalf("crictl inspect %s: %v", id, err)
		}
		return s
	}
	deadline := time.Now().Add(90 * time.Second)
	var h status
	for h = inspect(hog); h.Status.State != "CONTAINER_EXITED"; h = inspect(hog) {
		if time.Now().After(deadline) {
			t.Fatalf("hog still %s after 90s", h.Status.State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if h.Status.Reason != "OOMKilled" || h.Status.ExitCode != 137 {
		t.Errorf("hog ended with reason %q, exit %d; want OOMKilled, 137", h.Status.Reason, h.Status.ExitCode)
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
