package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// TestCRIContainerRandomizationIntegration: a container's own processes,
// its init and an exec, run with address space randomization, although
// the agent starts crun without it (agent/container/layout.go: crun sets
// the spec's personality, which clears ADDR_NO_RANDOMIZE, before the
// container's program). /proc/self/personality must read 00000000 (with
// the flag: 00040000) and the guest's randomize_va_space must not be 0.
func TestCRIContainerRandomizationIntegration(t *testing.T) {
	h := startCRIHarness(t)
	podCfg := h.podConfig("aslr-pod", nil)
	pod := h.runPod(podCfg)
	script := `echo init $(cat /proc/self/personality) va $(cat /proc/sys/kernel/randomize_va_space); exec sleep 1000`
	ctr := h.startContainer(pod, podCfg, h.containerConfig("aslr", nil, "sh", "-c", script))
	var logs string // the container's line; its stderr comes on crictl's
	h.waitFor("the container's first line", 30*time.Second, func() bool {
		r := h.c.Crictl(h.ctx, "logs", ctr)
		for _, l := range strings.Split(r.Stdout+"\n"+r.Stderr, "\n") {
			if strings.HasPrefix(l, "init ") {
				logs = l + "\n"
			}
		}
		return logs != ""
	})
	console, _ := os.ReadFile(filepath.Join(hostbed.DefaultStateDir, "sandboxes", pod, "console.log"))
	runtime := "?"
	for _, name := range []string{"crun", "runc"} {
		if strings.Contains(string(console), "containers run with "+name) {
			runtime = name
		}
	}
	t.Logf("guest OCI runtime %s; container init: %s", runtime, strings.TrimSpace(logs))
	if !strings.Contains(logs, "init 00000000 ") {
		t.Errorf("the container's init runs with personality %q; want 00000000 (randomized)", strings.TrimSpace(logs))
	}
	if strings.Contains(logs, " va 0") {
		t.Errorf("the guest kernel does not randomize at all: %q", strings.TrimSpace(logs))
	}
	r := h.c.Crictl(h.ctx, "exec", ctr, "cat", "/proc/self/personality")
	t.Logf("exec: %q", strings.TrimSpace(r.Stdout))
	if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "00000000" {
		t.Errorf("an exec in the container runs with personality %q (exit %d %s); want 00000000", strings.TrimSpace(r.Stdout), r.ExitCode, lastLine(r.Stderr))
	}
}
