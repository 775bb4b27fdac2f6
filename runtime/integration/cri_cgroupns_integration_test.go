package integration

import (
	"maps"
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
// of /sys/fs/cgroup, for its first process and for an exec'd one, in a
// user namespace pod too. A privileged container, to which containerd on
// a v2 node gives no cgroup namespace, sees its path in the guest's
// hierarchy.
func TestCRICgroupNamespaceIntegration(t *testing.T) {
	h := startCRIHarness(t)
	// The pod may hold privileged containers; its others are not.
	podCfg := h.podConfig("cgroupns-pod", map[string]any{"security_context": map[string]any{"privileged": true}})
	pod := h.runPod(podCfg)
	checkOwnCgroup(t, h, pod, podCfg, "limited", nil)

	privCfg := h.containerConfig("privileged", map[string]any{"security_context": map[string]any{"privileged": true}},
		"sleep", "1000")
	priv := h.startContainer(pod, podCfg, privCfg)
	if got := h.crictl("exec", priv, "cat", "/proc/self/cgroup"); got == "0::/" || !strings.HasPrefix(got, "0::/") ||
		!strings.HasSuffix(got, "/"+priv) {
		t.Errorf("a privileged container's /proc/self/cgroup reads %q, want its path in the guest's hierarchy (no cgroup namespace, as containerd on a v2 node)", got)
	}

	// A user namespace pod (hostUsers: false): runc mounts cgroup2 from
	// the container's user and cgroup namespaces.
	idmap := []map[string]any{{"host_id": 100000, "container_id": 0, "length": 65536}}
	userns := map[string]any{"namespace_options": map[string]any{"userns_options": map[string]any{"mode": 0, "uids": idmap, "gids": idmap}}}
	usernsPodCfg := h.podConfig("cgroupns-userns-pod", map[string]any{"security_context": userns})
	usernsPod := h.runPod(usernsPodCfg)
	checkOwnCgroup(t, h, usernsPod, usernsPodCfg, "limited-userns", map[string]any{"security_context": userns})
}

// checkOwnCgroup starts a container with a memory and a CPU limit in pod
// and checks what its first process and an exec'd one see of its cgroup.
func checkOwnCgroup(t *testing.T, h *criHarness, pod, podCfg, name string, linux map[string]any) {
	t.Helper()
	linux = maps.Clone(linux)
	if linux == nil {
		linux = map[string]any{}
	}
	linux["resources"] = map[string]any{"memory_limit_in_bytes": 64 << 20, "cpu_period": 100000, "cpu_quota": 50000}
	ctr := h.startContainer(pod, podCfg, h.containerConfig(name, linux, "sh", "-c", cgroupView+"; exec sleep 1000"))

	want := []string{"0::/", "67108864", "50000 100000"}
	var logs string
	h.waitFor(name+"'s first lines", 60*time.Second, func() bool {
		logs = h.crictl("logs", ctr)
		return len(strings.Split(logs, "\n")) >= len(want)
	})
	checkCgroupView(t, name+"'s process", logs, want)
	checkCgroupView(t, "a process exec'd in "+name, h.crictl("exec", ctr, "sh", "-c", cgroupView), want)
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
