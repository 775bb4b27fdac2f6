package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFaultContainerdRestartIntegration kills containerd (-9) while podvm
// pods run and starts it again on the same state, as after a crash or an
// upgrade. podvm shims outlive containerd, as runc's do; after the restart
// containerd reconnects to each and finds what happened meanwhile:
//
//   - survives: the pod and a container keep running and answer exec, and
//     a new container joins the pod; another container that exited while
//     containerd was down is reported exited as runc's is in the same
//     restart (containerd takes a task whose shim lists no process for a
//     leaked shim and deletes it, so both say 255, "Unknown").
//   - vm-died-meanwhile: QEMU was killed while containerd was down: the
//     container is reported exited (255), the sandbox NOTREADY, and the pod
//     is removed without leaving anything.
//   - shim-died-meanwhile: the shim (and with it its VM) was killed while
//     containerd was down: containerd cleans up after it (`shim delete`),
//     as it does for runc's.
func TestFaultContainerdRestartIntegration(t *testing.T) {
	h := startCRIHarness(t)
	parent := testCgroupParent(t, "restart-pod-uid")
	podCfg := h.podConfig("restart-pod", map[string]any{"cgroup_parent": parent})
	steadyCfg := h.containerConfig("steady", nil, "sleep", "100000")

	// restart kills containerd, runs meanwhile while it is down, and
	// starts it again.
	restart := func(t *testing.T, sh *criHarness, meanwhile func()) {
		shims := len(sh.c.PodvmShims())
		sh.c.Kill()
		down := time.Now()
		meanwhile()
		sh.c.Start(t)
		t.Logf("containerd was down %s; %d podvm shim(s) before, %d after", time.Since(down).Round(time.Millisecond), shims, len(sh.c.PodvmShims()))
	}

	t.Run("survives", func(t *testing.T) {
		sh := h.sub(t)
		pod := sh.runPod(podCfg)
		steady := sh.startContainer(pod, podCfg, steadyCfg)
		briefCfg := sh.containerConfig("brief", nil, "sh", "-c", "sleep 2; exit 7")
		brief := sh.startContainer(pod, podCfg, briefCfg)
		// The reference: the same container in a runc pod, through the
		// same restart.
		runcPodCfg := sh.podConfig("restart-runc", nil)
		runcPod := sh.crictl("runp", "--runtime", "runc", runcPodCfg)
		t.Cleanup(func() { sh.c.Crictl(sh.ctx, "rmp", "-f", runcPod) })
		runcBrief := sh.startContainer(runcPod, runcPodCfg, briefCfg)
		restart(t, sh, func() { time.Sleep(4 * time.Second) }) // brief exits meanwhile
		if s := sh.podState(pod); s != "SANDBOX_READY" {
			t.Errorf("pod is %s after containerd restarted", s)
		}
		if s := sh.inspect(steady).Status.State; s != "CONTAINER_RUNNING" {
			t.Errorf("the running container is %s after containerd restarted", s)
		}
		if got := sh.crictl("exec", steady, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
			t.Errorf("exec after the restart answered %q", got)
		}
		sh.waitFor("the container that ended meanwhile is reported exited", 20*time.Second, func() bool {
			return sh.inspect(brief).Status.State == "CONTAINER_EXITED"
		})
		// containerd reloads a task whose shim lists no process as a
		// leaked shim and deletes it, losing the exit status: the same
		// happens under runc, whose answer podvm must give.
		sh.waitFor("runc's container is reported exited", 20*time.Second, func() bool {
			return sh.inspect(runcBrief).Status.State == "CONTAINER_EXITED"
		})
		st, ref := sh.inspect(brief).Status, sh.inspect(runcBrief).Status
		t.Logf("the container that exited while containerd was down: podvm exit %d reason %q; runc exit %d reason %q",
			st.ExitCode, st.Reason, ref.ExitCode, ref.Reason)
		if st.ExitCode == 0 || st.Reason == "" || st.ExitCode != ref.ExitCode || st.Reason != ref.Reason {
			t.Errorf("podvm reports exit %d, reason %q; runc %d, %q", st.ExitCode, st.Reason, ref.ExitCode, ref.Reason)
		}
		// A new container joins the pod's VM through the reconnected shim.
		late := sh.startContainer(pod, podCfg, sh.containerConfig("late", nil, "sleep", "100000"))
		if got := sh.crictl("exec", late, "cat", "/proc/sys/kernel/hostname"); got == "" {
			t.Errorf("a container created after the restart does not answer")
		}
		sh.crictl("rmp", "-f", runcPod)
		sh.crictl("stopp", pod)
		sh.crictl("rmp", pod)
		sh.checkNothingLeft(pod, parent)
	})

	t.Run("vm-died-meanwhile", func(t *testing.T) {
		sh := h.sub(t)
		pod := sh.runPod(podCfg)
		ctr := sh.startContainer(pod, podCfg, steadyCfg)
		vm := sh.vmOf(pod)
		restart(t, sh, func() {
			kill(t, "qemu", vm.QEMU)
			time.Sleep(time.Second)
		})
		took := sh.waitFor("the container is reported exited", 30*time.Second, func() bool {
			return sh.inspect(ctr).Status.State == "CONTAINER_EXITED"
		})
		st := sh.inspect(ctr).Status
		t.Logf("container exited (seen %s after the restart): exit %d, reason %q", took.Round(time.Millisecond), st.ExitCode, st.Reason)
		if st.ExitCode == 0 || st.Reason == "" {
			t.Errorf("exit %d, reason %q: want non-zero and a reason", st.ExitCode, st.Reason)
		}
		sh.waitFor("the pod sandbox is NOTREADY", 30*time.Second, func() bool { return sh.podState(pod) == "SANDBOX_NOTREADY" })
		sh.crictl("stopp", pod)
		sh.crictl("rmp", pod)
		sh.checkNothingLeft(pod, parent)
	})

	t.Run("shim-died-meanwhile", func(t *testing.T) {
		sh := h.sub(t)
		pod := sh.runPod(podCfg)
		ctr := sh.startContainer(pod, podCfg, steadyCfg)
		vm := sh.vmOf(pod)
		restart(t, sh, func() {
			kill(t, "shim", vm.Shim)
			for range 50 { // the kernel kills QEMU with its parent
				if syscall.Kill(vm.QEMU, 0) != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		took := sh.waitFor("the container is reported exited", 30*time.Second, func() bool {
			return sh.inspect(ctr).Status.State == "CONTAINER_EXITED"
		})
		st := sh.inspect(ctr).Status
		t.Logf("container exited (seen %s after the restart): exit %d, reason %q", took.Round(time.Millisecond), st.ExitCode, st.Reason)
		if st.ExitCode == 0 || st.Reason == "" {
			t.Errorf("exit %d, reason %q: want non-zero and a reason", st.ExitCode, st.Reason)
		}
		sh.waitFor("the pod sandbox is NOTREADY", 30*time.Second, func() bool { return sh.podState(pod) == "SANDBOX_NOTREADY" })
		sh.crictl("stopp", pod)
		sh.crictl("rmp", pod)
		sh.checkNothingLeft(pod, parent)
	})

	t.Run("runs-again", func(t *testing.T) {
		sh := h.sub(t)
		pod := sh.runPod(podCfg)
		ctr := sh.startContainer(pod, podCfg, steadyCfg)
		if got := sh.crictl("exec", ctr, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
			t.Errorf("the pod run again answers uname -r with %q", got)
		}
	})
}
