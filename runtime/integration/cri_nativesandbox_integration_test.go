package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// pauseView prints what a container sharing its pod's pid namespace sees of
// the pod's sandbox process (pid 1) and of the namespaces it holds.
const pauseView = `grep -E '^(Uid|CapEff|Seccomp):' /proc/1/status; cat /proc/1/cmdline | tr '\0' ' '; echo; hostname; cat /proc/sys/kernel/shm_rmid_forced`

// TestCRINativeSandboxIntegration: with podvm_native_sandbox=1 on the
// guest's command line the agent creates a CRI pod's sandbox (pause)
// process itself when it covers its spec (docs/agent.md, "The native
// sandbox"), and the OCI runtime still creates it when the spec has what
// the agent does not do (here a seccomp profile); without the parameter
// (the default) the runtime creates it. Either way the pod's containers get
// the pod's hostname and ipc sysctl, share its pid namespace with the pause
// as pid 1, which reaps their orphans, and the pod stops without leaks. The
// native pause keeps no capability (the test image's pause, run by the
// runtime as root, keeps the default set) and has no seccomp filter; the
// runtime's has the RuntimeDefault filter.
func TestCRINativeSandboxIntegration(t *testing.T) {
	env := requireEnv(t)
	base, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := kernelParamsLine.ReplaceAllString(string(base), `kernel_params = ["podvm_native_sandbox=1"]`)
	if !strings.Contains(cfg, "podvm_native_sandbox=1") {
		t.Fatal("could not add podvm_native_sandbox=1 to the install's kernel_params")
	}
	nativeCfg := filepath.Join(t.TempDir(), "config-native.toml")
	if err := os.WriteFile(nativeCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startCRIHarness(t, hostbed.PodvmHandler("podvm-native", env.ShimBinary, nativeCfg))
	const runtimeCaps = "CapEff:\t00000000a80425fb"
	for _, tc := range []struct {
		name, handler string
		seccomp       map[string]any
		want          []string // lines of /proc/1/status asked for, in order
	}{
		{name: "native", handler: "podvm-native", want: []string{"CapEff:\t0000000000000000", "Seccomp:\t0", "/pause"}},
		// profile_type 0 is RuntimeDefault.
		{name: "fallback", handler: "podvm-native", seccomp: map[string]any{"profile_type": 0}, want: []string{runtimeCaps, "Seccomp:\t2"}},
		{name: "default", handler: "podvm", want: []string{runtimeCaps, "Seccomp:\t0"}},
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
			pod, _ := h.runPodFrom(tc.handler, podCfg)
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
