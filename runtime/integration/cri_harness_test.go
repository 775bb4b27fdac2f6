package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// criBusybox is a busybox image the test registry serves under the name
// critest uses.
const criBusybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// criHarness is a CRI containerd with the podvm handler, a pod network and
// the test registry (startCRI), driven with crictl: what the CRI
// tests share.
type criHarness struct {
	t   *testing.T
	c   *testContainerd
	dir string
	ctx context.Context
}

// startCRIHarness starts it with the podvm handler and any extra ones.
func startCRIHarness(t *testing.T, extra ...hostbed.Handler) *criHarness {
	env := requireEnv(t)
	tools := requireCRI(t)
	dir := t.TempDir()
	c := startCRI(t, env, tools, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	h := &criHarness{t: t, c: c, dir: dir, ctx: ctx}
	h.crictl("pull", criBusybox)
	return h
}

// crictl runs crictl and fails the test unless it succeeds.
func (h *criHarness) crictl(args ...string) string {
	h.t.Helper()
	r := h.c.Crictl(h.ctx, args...)
	if r.ExitCode != 0 {
		h.t.Fatalf("crictl %s: exit %d\n%s%s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// crictlTimed is crictl that also returns how long the call took.
func (h *criHarness) crictlTimed(args ...string) (string, time.Duration) {
	h.t.Helper()
	start := time.Now()
	out := h.crictl(args...)
	return out, time.Since(start)
}

func (h *criHarness) writeJSON(name string, v any) string {
	h.t.Helper()
	b, _ := json.Marshal(v)
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// podConfig writes a pod sandbox config; linux is its linux section.
func (h *criHarness) podConfig(name string, linux map[string]any) string {
	if linux == nil {
		linux = map[string]any{}
	}
	return h.writeJSON(name+"-pod.json", map[string]any{
		"metadata":      map[string]string{"name": name, "namespace": "podvm-test", "uid": name + "-uid"},
		"log_directory": filepath.Join(h.dir, "logs", name),
		"linux":         linux,
	})
}

// containerConfig writes a busybox container config; linux is its linux
// section.
func (h *criHarness) containerConfig(name string, linux map[string]any, cmd ...string) string {
	if linux == nil {
		linux = map[string]any{}
	}
	return h.writeJSON(name+".json", map[string]any{
		"metadata": map[string]string{"name": name},
		"image":    map[string]string{"image": criBusybox},
		"command":  cmd,
		"log_path": name + ".log",
		"linux":    linux,
	})
}

// runPod starts a podvm pod and registers its removal and leak check.
func (h *criHarness) runPod(podCfg string) string {
	h.t.Helper()
	pod, _ := h.runPodFrom("podvm", podCfg)
	return pod
}

// runPodFrom starts the pod of config podCfg on handler, registers its
// removal and leak check, and says how long RunPodSandbox took.
func (h *criHarness) runPodFrom(handler, podCfg string) (string, time.Duration) {
	h.t.Helper()
	pod, took := h.crictlTimed("runp", "--runtime", handler, podCfg)
	h.t.Cleanup(func() {
		h.c.Crictl(context.Background(), "stopp", pod)
		h.c.Crictl(context.Background(), "rmp", "-f", pod)
		assertNoLeaks(h.t, pod)
	})
	return pod, took
}

// startContainer creates and starts a container in pod.
func (h *criHarness) startContainer(pod, podCfg, cfg string) string {
	h.t.Helper()
	id := h.crictl("create", pod, cfg, podCfg)
	h.crictl("start", id)
	return id
}

type criContainerStatus struct {
	Status struct {
		State    string `json:"state"`
		Reason   string `json:"reason"`
		Message  string `json:"message"`
		ExitCode int    `json:"exitCode"`
	} `json:"status"`
}

func (h *criHarness) inspect(id string) criContainerStatus {
	h.t.Helper()
	var s criContainerStatus
	if err := json.Unmarshal([]byte(h.crictl("inspect", "-o", "json", id)), &s); err != nil {
		h.t.Fatalf("crictl inspect %s: %v", id, err)
	}
	return s
}

// podState is the pod sandbox's state: SANDBOX_READY or SANDBOX_NOTREADY.
func (h *criHarness) podState(id string) string {
	h.t.Helper()
	var s struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(h.crictl("inspectp", "-o", "json", id)), &s); err != nil {
		h.t.Fatalf("crictl inspectp %s: %v", id, err)
	}
	return s.Status.State
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func (h *criHarness) waitFor(what string, timeout time.Duration, cond func() bool) time.Duration {
	h.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			h.t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// testCgroupParent is a pod cgroup path of the kubelet's cgroupfs form,
// unique to this test process; the returned top is what to remove after.
func testCgroupParent(t *testing.T, pod string) (parent string) {
	top := fmt.Sprintf("/podvm-test-%d", os.Getpid())
	t.Cleanup(func() {
		if err := hostbed.RemoveCgroupTree(top, time.Second); err != nil {
			t.Errorf("remove the test's pod cgroups: %v", err)
		}
	})
	return top + "/pod" + pod
}
