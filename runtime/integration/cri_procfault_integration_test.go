package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFaultContainerProcessKilledIntegration kills (-9) processes of a
// container inside the guest, from a sibling container in the pod's
// shared pid namespace: the init of a running container, an exec in
// flight, and the init of a container being stopped. Each ends with the
// process reported exited (137, reason Error) while the pod and its other
// container carry on, and the pod runs a new container after all of them.
// (A created container has no process to kill through CRI: containerd
// creates the task in StartContainer, which starts it at once.)
func TestFaultContainerProcessKilledIntegration(t *testing.T) {
	h := startCRIHarness(t)
	podCfg := h.podConfig("fault-proc", nil) // CRI's default: one pid namespace for the pod
	pod := h.runPod(podCfg)
	helper := h.startContainer(pod, podCfg, h.containerConfig("helper", nil, "sleep", "100000"))

	// killIn kills, from the helper, the guest processes whose "ps -o
	// pid,args" line the awk condition selects, and says how many.
	killIn := func(t *testing.T, cond string) {
		t.Helper()
		script := fmt.Sprintf(`pids=$(ps -o pid,args | awk '%s {print $1}'); [ -n "$pids" ] || exit 3; kill -9 $pids; echo $pids`, cond)
		r := h.c.Crictl(h.ctx, "exec", helper, "sh", "-c", script)
		if r.ExitCode != 0 {
			t.Fatalf("kill in the guest (%s): exit %d, %s%s", cond, r.ExitCode, r.Stdout, r.Stderr)
		}
		t.Logf("killed guest pid(s) %s", strings.TrimSpace(r.Stdout))
	}
	exited := func(t *testing.T, sh *criHarness, ctr string) criContainerStatus {
		took := sh.waitFor("the container is reported exited", 20*time.Second, func() bool {
			return sh.inspect(ctr).Status.State == "CONTAINER_EXITED"
		})
		st := sh.inspect(ctr)
		t.Logf("container exited %s after the kill: exit %d, reason %q", took.Round(time.Millisecond), st.Status.ExitCode, st.Status.Reason)
		return st
	}
	podCarriesOn := func(t *testing.T, sh *criHarness) {
		if s := sh.podState(pod); s != "SANDBOX_READY" {
			t.Errorf("pod is %s after a container process was killed", s)
		}
		if s := sh.inspect(helper).Status.State; s != "CONTAINER_RUNNING" {
			t.Errorf("the pod's other container is %s", s)
		}
	}

	t.Run(string(running), func(t *testing.T) {
		sh := h.sub(t)
		ctr := sh.startContainer(pod, podCfg, sh.containerConfig("running", nil, "sleep", "1001"))
		killIn(t, `$2 == "sleep" && $3 == "1001"`)
		if st := exited(t, sh, ctr); st.Status.ExitCode != 137 || st.Status.Reason != "Error" {
			t.Errorf("exit %d, reason %q: want 137, Error", st.Status.ExitCode, st.Status.Reason)
		}
		podCarriesOn(t, sh)
		sh.crictl("rm", ctr)
	})

	t.Run(string(execInFlight), func(t *testing.T) {
		sh := h.sub(t)
		ctr := sh.startContainer(pod, podCfg, sh.containerConfig("exec-target", nil, "sleep", "1001"))
		pending := sh.background("exec", ctr, "sleep", "1002")
		sh.waitFor("the exec runs in the guest", 20*time.Second, func() bool {
			return strings.Contains(sh.c.Crictl(sh.ctx, "exec", helper, "ps", "-o", "args").Stdout, "sleep 1002")
		})
		killIn(t, `$2 == "sleep" && $3 == "1002"`)
		r, _ := pending()
		t.Logf("the exec returned %s after it began: exit %d %s", r.Duration.Round(time.Millisecond), r.ExitCode, lastLine(r.Stderr))
		if !strings.Contains(r.Stderr, "exit code 137") {
			t.Errorf("the killed exec did not end with exit code 137: exit %d, %s", r.ExitCode, r.Stderr)
		}
		if s := sh.inspect(ctr).Status.State; s != "CONTAINER_RUNNING" {
			t.Errorf("the container is %s after its exec was killed", s)
		}
		podCarriesOn(t, sh)
		sh.crictl("stop", "-t", "0", ctr)
		sh.crictl("rm", ctr)
	})

	t.Run(string(stopping), func(t *testing.T) {
		sh := h.sub(t)
		ctr := sh.startContainer(pod, podCfg, sh.containerConfig("stop-target", nil, victimCommand...))
		sh.waitVictimReady(ctr)
		pending := sh.background("stop", "-t", "60", ctr)
		sh.waitFor("the container is being stopped", 20*time.Second, func() bool { return sh.logHas("StopContainer for", ctr) })
		time.Sleep(500 * time.Millisecond)
		killIn(t, `$2 == "sh" && $3 == "-c" && $4 == "trap"`)
		r, _ := pending()
		t.Logf("stop returned %s after it began (timeout 60s): exit %d", r.Duration.Round(time.Millisecond), r.ExitCode)
		if r.ExitCode != 0 || r.Duration > 20*time.Second {
			t.Errorf("stop: exit %d after %s; want success well before its timeout: %s", r.ExitCode, r.Duration, r.Stderr)
		}
		if st := exited(t, sh, ctr); st.Status.ExitCode != 137 {
			t.Errorf("exit %d: want 137", st.Status.ExitCode)
		}
		podCarriesOn(t, sh)
		sh.crictl("rm", ctr)
	})

	t.Run("runs-again", func(t *testing.T) {
		sh := h.sub(t)
		ctr := sh.startContainer(pod, podCfg, sh.containerConfig("again", nil, "sleep", "1001"))
		if got := sh.crictl("exec", ctr, "uname", "-r"); !strings.HasSuffix(got, "-podvm") {
			t.Errorf("a new container in the pod answers uname -r with %q", got)
		}
		podCarriesOn(t, sh)
	})
}
