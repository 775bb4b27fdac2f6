package integration

import (
	"strconv"
	"strings"
	"testing"
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
