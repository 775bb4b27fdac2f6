package integration

import (
	"strings"
	"testing"
	"time"
)

// pauseView prints what a container sharing its pod's pid namespace sees of
// the pod's sandbox process (pid 1) and of the namespaces it holds.
const pauseView = `grep -E '^(Uid|CapEff|Seccomp):' /proc/1/status; cat /proc/1/cmdline | tr '\0' ' '; echo; hostname; cat /proc/sys/kernel/shm_rmid_forced`

// TestCRINativeSandboxIntegration: the agent creates a CRI pod's sandbox
// (pause) process itself when it covers its spec (docs/agent.md, "The
// native sandbox"), and the OCI runtime still creates it when the spec has
// what the agent does not do (here a seccomp profile). Either way the
// pod's containers get the pod's hostname and ipc sysctl, share its pid
// namespace with the pause as pid 1, which reaps their orphans, and the pod
// stops without leaks. The native pause keeps no capability and no
// seccomp filter; the runtime's has the RuntimeDefault filter.
func TestCRINativeSandboxIntegration(t *testing.T) {
	h := startCRIHarness(t)
	for _, tc := range []struct {
		name    string
		seccomp map[string]any
		want    []string // lines of /proc/1/status asked for, in order
	}{
		{name: "native", want: []string{"CapEff:\t0000000000000000", "Seccomp:\t0", "/pause"}},
		// profile_type 0 is RuntimeDefault.
		{name: "fallback", seccomp: map[string]any{"profile_type": 0}, want: []string{"Seccomp:\t2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := map[string]any{"namespace_options": map[string]any{"pid": 0}} // POD
			if tc.seccomp != nil {
				sc["seccomp"] = tc.seccomp
			}
			podCfg := h.writeJSON(tc.name+"-pod.json", map[string]any{
				"metadata":      map[string]string{"name": "sandbox-" + tc.name, "namespace": "podvm-test", "uid": "sandbox-" + tc.name + "-uid"},
				"hostname":      "pod-" + tc.name,
				"log_directory": h.dir + "/logs/sandbox-" + tc.name,
				"linux":         map[string]any{"security_context": sc, "sysctls": map[string]string{"kernel.shm_rmid_forced": "1"}},
			})
			pod := h.runPod(podCfg)
			ctr := h.startContainer(pod, podCfg, h.containerConfig("viewer-"+tc.name, nil, "sh", "-c", "exec sleep 1000"))
			view := h.crictl("exec", ctr, "sh", "-c", pauseView)
			t.Logf("pid 1 of pod %s, seen from its container:\n%s", tc.name, view)
			lines := map[string]bool{}
			for l := range strings.SplitSeq(view, "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, want := range append(tc.want, "pod-"+tc.name, "1") {
				if !lines[want] {
					t.Errorf("pod %s: no line %q in\n%s", tc.name, want, view)
				}
			}
			// An orphan of the container ends; pid 1 must reap it.
			h.crictl("exec", ctr, "sh", "-c", "sh -c 'sleep 0.2 &'")
			var zombies string
			h.waitFor("the orphan reaped", 30*time.Second, func() bool {
				zombies = h.crictl("exec", ctr, "sh", "-c", `grep -l '^[0-9]* (sleep) Z' /proc/[0-9]*/stat 2>/dev/null | wc -l`)
				return strings.TrimSpace(zombies) == "0"
			})
		})
	}
}
