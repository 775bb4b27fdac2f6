package integration

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// TestCRIPodVMKilledIntegration kills the pod's QEMU with SIGKILL while a
// container runs, as the OOM killer or an operator might.
func TestCRIPodVMKilledIntegration(t *testing.T) {
	checkVMDeath(t, vmDeath{
		causes: []string{"qemu for sandbox", "signal: killed"},
		kill: func(h *criHarness, pod, ctr string) {
			qemu, _ := hostbed.VMProcesses(pod)
			if len(qemu) != 1 {
				t.Fatalf("qemu of pod %s: %v, want one", pod, qemu)
			}
			if err := syscall.Kill(qemu[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestCRIPodGuestPanicIntegration panics the guest kernel from a
// privileged container (sysrq c). The guest kernel has panic=-1 and QEMU
// -no-reboot, so QEMU exits.
func TestCRIPodGuestPanicIntegration(t *testing.T) {
	checkVMDeath(t, vmDeath{
		privileged: true,
		causes:     []string{"the guest shut down, rebooted or panicked", "Kernel panic"},
		kill: func(h *criHarness, pod, ctr string) {
			// The exec dies with the VM: its result does not matter,
			// only that it returns.
			ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
			defer cancel()
			r := h.c.Crictl(ctx, "exec", ctr, "sh", "-c", "echo c > /proc/sysrq-trigger")
			t.Logf("exec of the panic: exit %d after %s", r.ExitCode, r.Duration.Round(time.Millisecond))
		},
	})
}

// TestCRIPodShimKilledIntegration kills the pod's shim itself: its VM goes
// with it (the kernel kills QEMU and virtiofsd when their parent dies),
// and containerd's `shim delete` must clean up what the shim recorded,
// the pod's host cgroup included.
func TestCRIPodShimKilledIntegration(t *testing.T) {
	checkVMDeath(t, vmDeath{
		shimDies: true,
		kill: func(h *criHarness, pod, ctr string) {
			qemu, _ := hostbed.VMProcesses(pod)
			if len(qemu) != 1 {
				t.Fatalf("qemu of pod %s: %v, want one", pod, qemu)
			}
			shim := hostbed.ParentPid(qemu[0])
			if shim <= 1 {
				t.Fatalf("no parent of qemu %d", qemu[0])
			}
			if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// vmDeath is one way for a pod's VM to die.
type vmDeath struct {
	// privileged runs the pod and its container privileged.
	privileged bool
	// kill ends the VM of pod while container ctr runs.
	kill func(h *criHarness, pod, ctr string)
	// causes must all be on the shim's "pod VM died" line.
	causes []string
	// shimDies: the shim goes too, so it reports nothing itself and
	// containerd's Delete calls to it fail (containerd then runs
	// `shim delete`).
	shimDies bool
}

// checkVMDeath runs a pod with a running container, kills its VM, and
// checks what the kubelet relies on to restart the pod: the container is
// reported exited with a non-zero code and a reason, the sandbox NOTREADY,
// stopp and rmp return promptly, nothing is left on the host (processes,
// mounts, sockets, state directory, taps, network namespace, the pod's
// host cgroup, the shim's socket), and
// the same pod config runs again. While the shim lives, its log must give
// the cause and containerd must handle the sandbox's exit at the first
// attempt.
func checkVMDeath(t *testing.T, d vmDeath) {
	h := startCRIHarness(t)
	parent := testCgroupParent(t, "vmdeath-pod-uid")
	linux := map[string]any{"cgroup_parent": parent}
	var ctrLinux map[string]any
	if d.privileged {
		linux["security_context"] = map[string]any{"privileged": true}
		ctrLinux = map[string]any{"security_context": map[string]any{"privileged": true}}
	}
	podCfg := h.podConfig("vmdeath-pod", linux)
	ctrCfg := h.containerConfig("victim", ctrLinux, "sleep", "1000")
	pod := h.runPod(podCfg)
	ctr := h.startContainer(pod, podCfg, ctrCfg)

	d.kill(h, pod, ctr)
	took := h.waitFor("the container is reported exited", 20*time.Second, func() bool {
		return h.inspect(ctr).Status.State == "CONTAINER_EXITED"
	})
	st := h.inspect(ctr).Status
	t.Logf("container exited %s after the VM died: exit %d, reason %q, message %q", took.Round(time.Millisecond), st.ExitCode, st.Reason, st.Message)
	if st.ExitCode == 0 || st.Reason == "" {
		t.Errorf("container exit %d, reason %q: want a non-zero exit code and a reason", st.ExitCode, st.Reason)
	}
	took = h.waitFor("the pod sandbox is NOTREADY", 20*time.Second, func() bool { return h.podState(pod) == "SANDBOX_NOTREADY" })
	t.Logf("sandbox NOTREADY %s later", took.Round(time.Millisecond))

	// The kubelet's restart of a pod whose sandbox died: StopPodSandbox,
	// (RemovePodSandbox when it cleans up), RunPodSandbox again.
	_, stopp := h.crictlTimed("stopp", pod)
	_, rmp := h.crictlTimed("rmp", pod)
	t.Logf("stopp %s, rmp %s", stopp.Round(time.Millisecond), rmp.Round(time.Millisecond))
	if stopp > 10*time.Second || rmp > 10*time.Second {
		t.Errorf("stopp took %s, rmp %s: want each within 10s", stopp, rmp)
	}
	h.checkNothingLeft(pod, parent)
	if !d.shimDies {
		checkDeathLogged(t, h, pod, d.causes)
	}

	again := h.runPod(podCfg)
	ctr2 := h.startContainer(again, podCfg, ctrCfg)
	if got := h.crictl("exec", ctr2, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
		t.Errorf("the pod run again answers uname -r with %q, not the guest kernel", got)
	}
	if s := h.podState(again); s != "SANDBOX_READY" {
		t.Errorf("the pod run again is %s", s)
	}
}

// checkDeathLogged looks in containerd's log (which carries the shim's)
// for the shim's report of the death with its causes, and for containerd
// failing to handle the exits, which it then retries with backoff: the pod
// would go NOTREADY late, and an answer of the shim was lost on the way.
func checkDeathLogged(t *testing.T, h *criHarness, pod string, causes []string) {
	t.Helper()
	reported := false
	for _, l := range h.c.LogLines() {
		if strings.Contains(l, "pod VM died") && strings.Contains(l, pod) {
			reported = true
			for _, c := range causes {
				if !strings.Contains(l, c) {
					t.Errorf("the shim's report of the VM's death lacks %q:\n%s", c, l)
				}
			}
		}
		for _, bad := range []string{"failed to handle sandbox exit", "failed to handle container TaskExit", "failed to delete task"} {
			// This pod's: another pod of the same containerd may have
			// been hit on purpose while it was being created.
			if strings.Contains(l, bad) && strings.Contains(l, pod) {
				t.Errorf("containerd: %s", l)
			}
		}
	}
	if !reported {
		t.Errorf("the shim logged no \"pod VM died\" for pod %s", pod)
	}
}
