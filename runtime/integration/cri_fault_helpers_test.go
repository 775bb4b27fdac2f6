package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// Fault tests hit a podvm pod at each point of its life and check what the
// kubelet relies on to carry on: the task is reported exited with a
// reason (or the RunPodSandbox that was creating it fails with one), the
// sandbox goes NOTREADY, stopp and rmp return promptly, nothing of the pod
// is left on the host (hostbed.Leaks: processes, mounts, sockets, state
// directory, host cgroup; CRI's own leaks; the shim's socket), and the same
// pod config runs again.

// point is where in a pod's life a fault strikes.
type point string

const (
	// creating: RunPodSandbox is in flight, QEMU spawned, the guest booting.
	creating point = "creating"
	// running: a container runs.
	running point = "running"
	// execInFlight: an exec into the container is running.
	execInFlight point = "exec-in-flight"
	// stopping: StopContainer is waiting for a container that ignores
	// SIGTERM.
	stopping point = "stopping"
)

// victim is what a fault hits.
type victim struct {
	pod, ctr string // empty while creating
	vm       hostbed.VM
}

// fault is one way for a pod VM to die.
type fault struct {
	// name is used for the pod's name and cgroup.
	name string
	// hit ends the VM of v.
	hit func(t *testing.T, h *criHarness, v victim)
	// shimDies: the shim goes too, so containerd's calls to it fail and
	// its death report cannot be checked.
	shimDies bool
	// causes must all be on the shim's "pod VM died" line.
	causes []string
	// privileged runs the pod and container privileged, in the guest's
	// root pid namespace.
	privileged bool
	// needVirtiofsd: creating waits for virtiofsd as well as QEMU.
	needVirtiofsd bool
}

// victimCommand ignores SIGTERM, so that StopContainer waits its timeout
// (stopping), and keeps running otherwise. It says victimReady once the
// trap is set: StartContainer returns when the runtime released the
// container, before its shell ran a line, so a stop sent at once can
// land before the trap (exit 143 instead of a wait).
var victimCommand = []string{"sh", "-c", `trap "" TERM; echo ` + victimReady + `; while :; do sleep 1; done`}

const victimReady = "victim-ignores-sigterm"

// waitVictimReady waits until the victim container ctr has set its trap.
func (h *criHarness) waitVictimReady(ctr string) {
	h.waitFor("the victim ignores SIGTERM", 20*time.Second, func() bool {
		return strings.Contains(h.c.Crictl(h.ctx, "logs", ctr).Stdout, victimReady)
	})
}

// runFault hits a fresh pod of one harness at each point in turn, as a
// subtest each; a subtest's pod is the same pod config run again after the
// previous point's fault, and a last subtest runs it once more.
func runFault(t *testing.T, f fault, points ...point) {
	h := startCRIHarness(t)
	parent := testCgroupParent(t, f.name+"-uid")
	podLinux := map[string]any{"cgroup_parent": parent}
	var ctrLinux map[string]any
	if f.privileged {
		// pid 2 is NODE: the guest's root pid namespace, where the
		// agent is PID 1.
		ns := map[string]any{"pid": 2}
		podLinux["security_context"] = map[string]any{"privileged": true, "namespace_options": ns}
		ctrLinux = map[string]any{"security_context": map[string]any{"privileged": true, "namespace_options": ns}}
	}
	podCfg := h.podConfig(f.name, podLinux)
	ctrCfg := h.containerConfig(f.name+"-victim", ctrLinux, victimCommand...)
	for _, p := range points {
		t.Run(string(p), func(t *testing.T) {
			sh := h.sub(t)
			if p == creating {
				hitWhileCreating(t, sh, f, podCfg, parent)
				return
			}
			pod := sh.runPod(podCfg)
			ctr := sh.startContainer(pod, podCfg, ctrCfg)
			v := victim{pod: pod, ctr: ctr, vm: sh.vmOf(pod)}
			var pending func() (cmdResult, string)
			switch p {
			case execInFlight:
				pending = sh.background("exec", ctr, "sleep", "999")
				sh.waitFor("the exec runs in the guest", 20*time.Second, func() bool {
					return strings.Contains(sh.c.Crictl(sh.ctx, "exec", ctr, "ps", "-o", "args").Stdout, "sleep 999")
				})
			case stopping:
				sh.waitVictimReady(ctr)
				pending = sh.background("stop", "-t", "60", ctr)
				// The stop has sent SIGTERM, which the victim ignores, and
				// waits for its exit.
				sh.waitFor("the container is being stopped", 20*time.Second, func() bool {
					return sh.logHas("StopContainer for", ctr)
				})
				time.Sleep(500 * time.Millisecond)
			}
			f.hit(t, sh, v)
			if pending != nil {
				r, what := pending()
				t.Logf("%s in flight returned %s after the fault: exit %d %s", what, r.Duration.Round(time.Millisecond), r.ExitCode, lastLine(r.Stderr))
				if r.Duration > 30*time.Second {
					t.Errorf("%s in flight took %s to return after the fault", what, r.Duration)
				}
			}
			checkPodDied(t, sh, f, v, parent)
		})
	}
	t.Run("runs-again", func(t *testing.T) {
		sh := h.sub(t)
		pod := sh.runPod(podCfg)
		ctr := sh.startContainer(pod, podCfg, ctrCfg)
		if got := sh.crictl("exec", ctr, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
			t.Errorf("the pod run again answers uname -r with %q, not the guest kernel", got)
		}
	})
}

// hitWhileCreating runs the pod and strikes as soon as its QEMU (and, if
// the fault needs it, virtiofsd) exists, while the guest boots: the
// RunPodSandbox must fail, saying why, and leave nothing.
func hitWhileCreating(t *testing.T, h *criHarness, f fault, podCfg, parent string) {
	runp := h.background("runp", "--runtime", "podvm", podCfg)
	var vm hostbed.VM
	deadline := time.Now().Add(30 * time.Second)
	for {
		if vms := h.c.VMs(); len(vms) == 1 && (!f.needVirtiofsd || vms[0].Virtiofsd != 0) {
			vm = vms[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pod VM appeared within 30s of runp")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Strike once QEMU runs the guest, while the shim waits for its
	// agent: the longest part of a pod's creation.
	h.waitFor("QEMU runs the guest", 30*time.Second, func() bool {
		return h.logHas("pod VM started", vm.ID)
	})
	f.hit(t, h, victim{vm: vm})
	r, _ := runp()
	if r.ExitCode == 0 {
		pod := strings.TrimSpace(r.Stdout)
		h.c.Crictl(context.Background(), "rmp", "-f", pod)
		t.Fatalf("runp succeeded although the VM was hit while it booted (the guest was faster than the test?)")
	}
	t.Logf("runp failed %s after it began: %s", r.Duration.Round(time.Millisecond), lastLine(r.Stderr))
	if strings.TrimSpace(r.Stderr) == "" {
		t.Errorf("runp failed without saying why")
	}
	for _, c := range f.creatingCauses() {
		if !strings.Contains(r.Stderr, c) {
			t.Errorf("runp's error does not mention %q:\n%s", c, r.Stderr)
		}
	}
	h.checkNothingLeft(vm.ID, parent)
}

// creatingCauses are what RunPodSandbox's error must mention: the shim's
// report travels back through containerd when the shim lives.
func (f fault) creatingCauses() []string {
	if f.shimDies {
		return nil
	}
	return f.causes
}

// checkPodDied checks what a fault that ended the VM of a running pod
// must leave: the container exited with a non-zero status and a reason,
// the sandbox NOTREADY, prompt stopp and rmp, nothing on the host, and
// (while the shim lives) its report of the death, handled by containerd
// at the first attempt.
func checkPodDied(t *testing.T, h *criHarness, f fault, v victim, parent string) {
	took := h.waitFor("the container is reported exited", 20*time.Second, func() bool {
		return h.inspect(v.ctr).Status.State == "CONTAINER_EXITED"
	})
	st := h.inspect(v.ctr).Status
	t.Logf("container exited %s after the fault: exit %d, reason %q", took.Round(time.Millisecond), st.ExitCode, st.Reason)
	if st.ExitCode == 0 || st.Reason == "" {
		t.Errorf("container exit %d, reason %q: want a non-zero exit code and a reason", st.ExitCode, st.Reason)
	}
	took = h.waitFor("the pod sandbox is NOTREADY", 20*time.Second, func() bool { return h.podState(v.pod) == "SANDBOX_NOTREADY" })
	t.Logf("sandbox NOTREADY %s later", took.Round(time.Millisecond))
	_, stopp := h.crictlTimed("stopp", v.pod)
	_, rmp := h.crictlTimed("rmp", v.pod)
	t.Logf("stopp %s, rmp %s", stopp.Round(time.Millisecond), rmp.Round(time.Millisecond))
	if stopp > 10*time.Second || rmp > 10*time.Second {
		t.Errorf("stopp took %s, rmp %s: want each within 10s", stopp, rmp)
	}
	h.checkNothingLeft(v.pod, parent)
	if !f.shimDies {
		checkDeathLogged(t, h, v.pod, f.causes)
	}
}

// checkNothingLeft fails the test if anything of sandbox id is left on the
// host or in containerd, waiting a few seconds for a shim that is exiting.
func (h *criHarness) checkNothingLeft(id, parent string) {
	h.t.Helper()
	var leaks []string
	for range 50 {
		leaks = append(hostbed.Leaks(id), hostbed.CgroupLeaks(parent+"/"+id)...)
		leaks = append(leaks, h.c.CRILeaks()...)
		leaks = append(leaks, h.c.ShimSocketLeaks("k8s.io", id)...)
		if len(leaks) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Errorf("left behind by sandbox %s:\n  %s", id, strings.Join(leaks, "\n  "))
}

// sub is the harness for subtest t: the same containerd, network and
// registry; failures and cleanups are t's.
func (h *criHarness) sub(t *testing.T) *criHarness {
	c := *h
	c.t = t
	return &c
}

// background starts a crictl command and returns a function that waits
// for it, with what it was for messages.
func (h *criHarness) background(args ...string) func() (cmdResult, string) {
	done := make(chan cmdResult, 1)
	go func() { done <- h.c.Crictl(h.ctx, args...) }()
	return func() (cmdResult, string) { return <-done, "crictl " + args[0] }
}

// vmOf finds the host processes of pod's VM.
func (h *criHarness) vmOf(pod string) hostbed.VM {
	h.t.Helper()
	for _, vm := range h.c.VMs() {
		if vm.ID == pod {
			return vm
		}
	}
	h.t.Fatalf("no VM of pod %s among this containerd's shims", pod)
	return hostbed.VM{}
}

// lastLine is the last line of crictl's stderr that is not its warning
// about a missing crictl.yaml.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], "crictl.yaml") {
			return lines[i]
		}
	}
	return ""
}

// logHas reports whether one line of containerd's log (the shims' lines
// included) holds every one of parts.
func (h *criHarness) logHas(parts ...string) bool {
	for _, l := range h.c.LogLines() {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}
