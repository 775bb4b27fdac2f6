package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// TestCRIPodHostCgroupIntegration runs a podvm pod with a cgroup parent,
// as the kubelet's cgroupfs driver gives one: QEMU and virtiofsd must be in
// the sandbox's cgroup below it in every hierarchy (so the pod's host
// memory and CPU are charged to the pod), and the cgroup must be gone after
// stopp and rmp.
func TestCRIPodHostCgroupIntegration(t *testing.T) {
	h := startCRIHarness(t)
	parent := testCgroupParent(t, "cgroup-pod-uid")
	podCfg := h.podConfig("cgroup-pod", map[string]any{"cgroup_parent": parent})
	start := time.Now()
	pod := h.runPod(podCfg)
	t.Logf("runp: %s", time.Since(start).Round(time.Millisecond))
	leaf := parent + "/" + pod

	ctr := h.startContainer(pod, podCfg, h.containerConfig("steady", nil, "sleep", "1000"))
	qemu, fsd := hostbed.VMProcesses(pod)
	if len(qemu) != 1 || len(fsd) != 1 {
		t.Fatalf("VM processes of pod %s: qemu %v, virtiofsd %v; want one of each", pod, qemu, fsd)
	}
	for _, p := range []struct {
		name string
		pid  int
	}{{"qemu", qemu[0]}, {"virtiofsd", fsd[0]}} {
		cgs, err := hostbed.ProcCgroups(p.pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(cgs) < len(hostbed.CgroupMounts()) {
			t.Errorf("%s (pid %d) has %d cgroup lines for %d hierarchies: %v", p.name, p.pid, len(cgs), len(hostbed.CgroupMounts()), cgs)
		}
		for hier, path := range cgs {
			if path != leaf {
				t.Errorf("%s (pid %d) is in %q in hierarchy %q, want %q", p.name, p.pid, path, hier, leaf)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The figures behind overhead.podFixed in docs/design.md.
	if mem := filepath.Join("/sys/fs/cgroup/memory", leaf, "memory.usage_in_bytes"); fileExists(mem) {
		t.Logf("host memory charged to the pod's cgroup with one idle container: %d MiB; threads: qemu %d, virtiofsd %d",
			readInt(t, mem)>>20, hostbed.Threads(qemu[0]), hostbed.Threads(fsd[0]))
	}
	h.crictl("stop", ctr)

	_, stopp := h.crictlTimed("stopp", pod)
	_, rmp := h.crictlTimed("rmp", pod)
	t.Logf("stopp %s, rmp %s", stopp.Round(time.Millisecond), rmp.Round(time.Millisecond))
	if dirs := hostbed.CgroupDirs(leaf); len(dirs) > 0 {
		t.Errorf("the sandbox's host cgroup outlived rmp: %s", strings.Join(dirs, ", "))
	}
	// The pod cgroup is the kubelet's, and stays.
	if dirs := hostbed.CgroupDirs(parent); len(dirs) == 0 {
		t.Errorf("the pod cgroup %s was removed; it belongs to the kubelet", parent)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readInt(t *testing.T, p string) int64 {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return n
}
