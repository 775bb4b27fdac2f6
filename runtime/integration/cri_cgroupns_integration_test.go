package integration

import (
	"strings"
	"testing"
	"time"
)

// cgroupView prints what a process sees of its cgroup, one item a line:
// its /proc/self/cgroup, then memory.max and cpu.max at the root of its
// /sys/fs/cgroup (or "missing").
const cgroupView = `cat /proc/self/cgroup; for f in memory.max cpu.max; do cat /sys/fs/cgroup/$f 2>/dev/null || echo missing; done`

// TestCRICgroupNamespaceIntegration: a podvm container sees its own cgroup
// as on a cgroup v2 node, whatever the host runs: a private cgroup
// namespace (/proc/self/cgroup is "0::/") and its own limits at the root
// of /sys/fs/cgroup, for its first process and for an exec'd one. A
// privileged container, to which containerd on a v2 node gives no cgroup
// namespace, sees its path in the guest's hierarchy.
func TestCRICgroupNamespaceIntegration(t *testing.T) {
	h := startCRIHarness(t)
	// The pod may hold privileged containers; its others are not.
	podCfg := h.podConfig("cgroupns-pod", map[string]any{"security_context": map[string]any{"privileged": true}})
	pod := h.runPod(podCfg)
	resources := map[string]any{"memory_limit_in_bytes": 64 << 20, "cpu_period": 100000, "cpu_quota": 50000}
	ctrCfg := h.containerConfig("limited", map[string]any{"resources": resources},
		"sh", "-c", cgroupView+"; exec sleep 1000")
	ctr := h.startContainer(pod, podCfg, ctrCfg)

	want := []string{"0::/", "67108864", "50000 100000"}
	var logs string
	h.waitFor("the container's first lines", 60*time.Second, func() bool {
		logs = h.crictl("logs", ctr)
		return len(strings.Split(logs, "\n")) >= len(want)
	})
	checkCgroupView(t, "the container's process", logs, want)
	checkCgroupView(t, "an exec'd process", h.crictl("exec", ctr, "sh", "-c", cgroupView), want)

	privCfg := h.containerConfig("privileged", map[string]any{"security_context": map[string]any{"privileged": true}},
		"sleep", "1000")
	priv := h.startContainer(pod, podCfg, privCfg)
	if got := h.crictl("exec", priv, "cat", "/proc/self/cgroup"); got == "0::/" || !strings.HasPrefix(got, "0::/") ||
		!strings.HasSuffix(got, "/"+priv) {
		t.Errorf("a privileged container's /proc/self/cgroup reads %q, want its path in the guest's hierarchy (no cgroup namespace, as containerd on a v2 node)", got)
	}
}

func checkCgroupView(t *testing.T, who, got string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != len(want) {
		t.Errorf("%s sees %q, want the lines %q", who, got, want)
		return
	}
	for i, name := range []string{"/proc/self/cgroup", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max"} {
		if lines[i] != want[i] {
			t.Errorf("%s: %s reads %q, want %q", who, name, lines[i], want[i])
		}
	}
}
