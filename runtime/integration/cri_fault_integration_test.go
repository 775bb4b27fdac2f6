package integration

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kill sends SIGKILL to pid, failing the test if it cannot.
func kill(t *testing.T, what string, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no %s to kill", what)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", what, pid, err)
	}
}

// TestFaultVMMKilledIntegration: kill -9 of QEMU while the pod boots, with
// an exec in flight, and while a container is being stopped
// (TestCRIPodVMKilledIntegration covers a running container).
func TestFaultVMMKilledIntegration(t *testing.T) {
	runFault(t, fault{
		name:   "fault-vmm",
		causes: []string{"qemu for sandbox", "signal: killed"},
		hit:    func(t *testing.T, h *criHarness, v victim) { kill(t, "qemu", v.vm.QEMU) },
	}, creating, execInFlight, stopping)
}

// TestFaultVirtiofsdKilledIntegration: kill -9 of virtiofsd, the pod's
// shared filesystem, at every point: the guest has lost its containers'
// root filesystems, so the shim stops the VM and reports its tasks exited.
func TestFaultVirtiofsdKilledIntegration(t *testing.T) {
	runFault(t, fault{
		name:          "fault-virtiofsd",
		needVirtiofsd: true,
		causes:        []string{"virtiofsd for sandbox", "signal: killed", "lost its shared directory"},
		hit:           func(t *testing.T, h *criHarness, v victim) { kill(t, "virtiofsd", v.vm.Virtiofsd) },
	}, creating, running, execInFlight, stopping)
}

// TestFaultShimKilledIntegration: kill -9 of the pod's shim while the pod
// boots, with an exec in flight, and while a container is being stopped
// (TestCRIPodShimKilledIntegration covers a running container). The VM
// dies with the shim; containerd's `shim delete` cleans up what the shim
// recorded.
func TestFaultShimKilledIntegration(t *testing.T) {
	runFault(t, fault{
		name:     "fault-shim",
		shimDies: true,
		hit:      func(t *testing.T, h *criHarness, v victim) { kill(t, "shim", v.vm.Shim) },
	}, creating, execInFlight, stopping)
}

// TestFaultAgentDiedIntegration: the agent, PID 1 of the guest, crashes
// (SIGABRT from a privileged container in the guest's pid namespace: Go
// dumps its goroutines and exits). The guest kernel panics ("Attempted to
// kill init"), QEMU exits, and the pod dies as with any VM death: with a
// container running, with an exec in flight, and while a container is
// being stopped.
func TestFaultAgentDiedIntegration(t *testing.T) {
	runFault(t, fault{
		name:       "fault-agent",
		privileged: true,
		causes:     []string{"the guest shut down, rebooted or panicked", "Attempted to kill init"},
		hit: func(t *testing.T, h *criHarness, v victim) {
			// The exec dies with the VM: only its return matters.
			ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
			defer cancel()
			r := h.c.Crictl(ctx, "exec", v.ctr, "kill", "-ABRT", "1")
			t.Logf("exec of kill -ABRT 1: exit %d after %s", r.ExitCode, r.Duration.Round(time.Millisecond))
			if strings.Contains(r.Stderr, "Operation not permitted") {
				t.Fatalf("kill -ABRT 1 refused in the guest: %s", r.Stderr)
			}
		},
	}, running, execInFlight, stopping)
}

// TestFaultAgentSignalsIntegration: SIGTERM, SIGINT and SIGHUP sent to the
// agent (PID 1) by a privileged container in the guest's pid namespace do
// not end it: Go would exit on them, and PID 1 exiting panics the guest.
// The containers it starts still get SIGTERM's default action: a stop of
// a plain sleep (not PID 1 of its namespace here) ends it at once.
func TestFaultAgentSignalsIntegration(t *testing.T) {
	h := startCRIHarness(t)
	guestRoot := map[string]any{"privileged": true, "namespace_options": map[string]any{"pid": 2}}
	podCfg := h.podConfig("agent-signals", map[string]any{"security_context": guestRoot})
	pod := h.runPod(podCfg)
	ctr := h.startContainer(pod, podCfg, h.containerConfig("signaller", map[string]any{"security_context": guestRoot}, "sleep", "100000"))
	h.crictl("exec", ctr, "sh", "-c", "kill -TERM 1; kill -INT 1; kill -HUP 1; sleep 1")
	if got := h.crictl("exec", ctr, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
		t.Errorf("the guest after signals to its PID 1 answers %q", got)
	}
	if s := h.podState(pod); s != "SANDBOX_READY" {
		t.Errorf("pod is %s after signals to the agent", s)
	}
	_, took := h.crictlTimed("stop", "-t", "30", ctr)
	t.Logf("stop of a sleep in the guest: %s", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("stop took %s: the container ignored SIGTERM (inherited from the agent?)", took)
	}
}
