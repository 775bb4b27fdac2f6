package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCRIResizeIntegration: an in-place resize (UpdateContainerResources)
// within the pod VM's size changes the container's own cgroup limits as
// it sees them; one beyond the VM's size fails with an error naming the
// VM's size, and the limits stay as they were (never reported done while
// nothing changed, nor applied as a limit the VM cannot back).
func TestCRIResizeIntegration(t *testing.T) {
	h := startCRIHarness(t)
	limits := map[string]any{"memory_limit_in_bytes": 64 << 20, "cpu_period": 100000, "cpu_quota": 50000}
	podCfg := h.podConfig("resize-pod", map[string]any{"resources": limits})
	pod := h.runPod(podCfg)
	ctr := h.startContainer(pod, podCfg, h.containerConfig("resized", map[string]any{"resources": limits}, "sleep", "1000"))

	read := func(file string) string { return h.crictl("exec", ctr, "cat", "/sys/fs/cgroup/"+file) }
	if got := read("memory.max"); got != "67108864" {
		t.Fatalf("memory.max reads %q before the resize, want 67108864", got)
	}
	vmMiB := guestMemTotalMiB(t, h, ctr)

	steps := []struct {
		name  string
		flags []string
		file  string
		want  string // what file reads after the step
		err   string // part of the error; empty: the update succeeds
	}{
		{"memory up within the VM", []string{"--memory", strconv.Itoa(96 << 20)}, "memory.max", "100663296", ""},
		{"memory beyond the VM", []string{"--memory", strconv.FormatInt(int64(vmMiB+1024)<<20, 10)}, "memory.max", "100663296", "cannot grow"},
		{"memory down", []string{"--memory", strconv.Itoa(48 << 20)}, "memory.max", "50331648", ""},
		{"CPU up within the VM", []string{"--cpu-period", "100000", "--cpu-quota", "100000"}, "cpu.max", "100000 100000", ""},
		{"CPU beyond the VM", []string{"--cpu-period", "100000", "--cpu-quota", "6400000"}, "cpu.max", "100000 100000", "vCPUs and cannot grow"},
		{"CPU down", []string{"--cpu-period", "100000", "--cpu-quota", "25000"}, "cpu.max", "25000 100000", ""},
	}
	for _, s := range steps {
		r := h.c.Crictl(h.ctx, append(append([]string{"update"}, s.flags...), ctr)...)
		out := r.Stdout + r.Stderr
		switch {
		case s.err == "" && r.ExitCode != 0:
			t.Errorf("%s: crictl update failed (exit %d): %s", s.name, r.ExitCode, out)
		case s.err != "" && r.ExitCode == 0:
			t.Errorf("%s: crictl update succeeded, want an error (the VM cannot hold it): %s", s.name, out)
		case s.err != "" && (!strings.Contains(out, s.err) || !strings.Contains(out, "pod VM has")):
			t.Errorf("%s: the error %q does not name the VM's size (want %q)", s.name, out, s.err)
		}
		if got := read(s.file); got != s.want {
			t.Errorf("%s: %s reads %q inside, want %q", s.name, s.file, got, s.want)
		}
	}
}

// guestMemTotalMiB reads the guest's MemTotal from inside ctr.
func guestMemTotalMiB(t *testing.T, h *criHarness, ctr string) uint64 {
	t.Helper()
	line := strings.Fields(h.crictl("exec", ctr, "head", "-1", "/proc/meminfo"))
	if len(line) < 2 {
		t.Fatalf("/proc/meminfo starts %q", line)
	}
	kib, err := strconv.ParseUint(line[1], 10, 64)
	if err != nil {
		t.Fatalf("/proc/meminfo: %v", err)
	}
	return kib >> 10
}

// TestCRIResizeSmallCPUIntegration: a container limited to 10 millicores
// (the upstream spec "resize with equivalents": cpu.max 1000 100000, the
// kernel's smallest quota) is created, started and answers execs within
// bounds, and every exec reads the container's own limit, before and after a
// resize. Under TCG the OCI runtime's setup of a process costs tens of times
// its native CPU time; charged to the 1% quota, creating the container took
// 14.5 s and an exec ran past the agent's minute (docs/design.md "Small CPU
// limits").
func TestCRIResizeSmallCPUIntegration(t *testing.T) {
	// Bounds, from runs here (TCG, 2 shared cores): the same container
	// without a CPU limit is created and started in 0.9-1.8 s and answers
	// this exec in 0.3-0.4 s; with the 10m limit and the runtime's setup
	// under it, create and start took 6.6 s and the exec ran past the
	// agent's minute; with the setup under the floor, 0.6-1.0 s and
	// 3.6-7.3 s (the exec'd head itself runs under the 1% quota, as it
	// should).
	const createBound, execBound = 5 * time.Second, 15 * time.Second
	h := startCRIHarness(t)
	limits := map[string]any{"cpu_period": 100000, "cpu_quota": 1000, "cpu_shares": 2}
	podCfg := h.podConfig("small-cpu-pod", map[string]any{"resources": limits})
	pod := h.runPod(podCfg)
	// The same container without a limit, for the record: what the bounds
	// are measured against.
	start := time.Now()
	free := h.startContainer(pod, podCfg, h.containerConfig("no-cpu-limit", nil, "sleep", "1000"))
	t.Logf("container without a CPU limit created and started in %s", time.Since(start).Round(time.Millisecond))
	got, took := h.crictlTimed("exec", free, "head", "-n", "1", "/sys/fs/cgroup/cpu.max")
	t.Logf("container without a CPU limit: exec answered %q in %s", got, took.Round(time.Millisecond))

	start = time.Now()
	ctr := h.startContainer(pod, podCfg, h.containerConfig("small-cpu", map[string]any{"resources": limits}, "sleep", "1000"))
	took = time.Since(start)
	t.Logf("container with a 10m CPU limit created and started in %s", took.Round(time.Millisecond))
	if took > createBound {
		t.Errorf("create and start took %s, want at most %s", took.Round(time.Millisecond), createBound)
	}

	readCPUMax := func(when string) {
		got, took := h.crictlTimed("exec", ctr, "head", "-n", "1", "/sys/fs/cgroup/cpu.max")
		t.Logf("%s: exec answered %q in %s", when, got, took.Round(time.Millisecond))
		if got != "1000 100000" {
			t.Errorf("%s: cpu.max reads %q, want \"1000 100000\" (the container's own limit)", when, got)
		}
		if took > execBound {
			t.Errorf("%s: the exec took %s, want at most %s", when, took.Round(time.Millisecond), execBound)
		}
	}
	for i := range 3 {
		readCPUMax("exec " + strconv.Itoa(i+1))
	}
	h.crictl("update", "--cpu-period", "100000", "--cpu-quota", "1000", "--cpu-share", "2", ctr)
	readCPUMax("after a resize to the same limit")
}
