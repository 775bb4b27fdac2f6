package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
)

// staticAgent builds podvm-agent as the guest has it (static: the warm-up
// binds it into a root that has no libraries), for the warm-up's program.
func staticAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "podvm-agent")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/podvm-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build podvm-agent: %v\n%s", err, out)
	}
	return bin
}

// startWarmAgent is startAgent whose warm-up runs self as its program.
func startWarmAgent(t *testing.T, self string) *agent {
	t.Helper()
	return startAgentConfig(t, requireRunc(t), func(c *container.Config) { c.Self = self }, nil)
}

// TestServiceRunc_WarmRuntimeLeavesNothing warms the runtime (runc, or
// crun with PODVM_TEST_CRUN set) twice, checks that its throwaway
// containers left no bundle, runtime state, cgroup, mount or process, and
// that a real container runs after it. The warm-up itself fails unless
// its containers' programs ran, the exec exited 0 and the inits lived
// until killed.
func TestServiceRunc_WarmRuntimeLeavesNothing(t *testing.T) {
	a := startWarmAgent(t, staticAgent(t))
	name := "runc"
	if a.cfg.Crun != "" {
		name = "crun"
	}
	for range 2 {
		if _, err := a.WarmRuntime(ctxTimeout(t), &api.WarmRuntimeRequest{OciRuntime: name}); err != nil {
			t.Fatalf("WarmRuntime %s: %v", name, err)
		}
		checkWarmLeftNothing(t, a.cfg)
	}
	for _, id := range []string{container.WarmID, container.WarmAppID} {
		_, err := a.ListProcesses(ctxTimeout(t), &api.ListProcessesRequest{ContainerId: id})
		wantCode(t, err, codes.NotFound, id)
	}

	const id = "after-warm"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, busyboxRootfs(t), "true"), Stdout: true}, true)
	if got := a.wait(t, id); got != 0 {
		t.Errorf("container after the warm-up exited %d, want 0", got)
	}
	a.remove(t, id)
}

// TestServiceRunc_WarmRuntimeFailureLeavesNothing: a warm-up whose
// program cannot run (a script with no interpreter in the warm-up's root)
// fails, and leaves nothing either.
func TestServiceRunc_WarmRuntimeFailureLeavesNothing(t *testing.T) {
	script := filepath.Join(t.TempDir(), "warm.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startWarmAgent(t, script)
	name := "runc"
	if a.cfg.Crun != "" {
		name = "crun"
	}
	if _, err := a.WarmRuntime(ctxTimeout(t), &api.WarmRuntimeRequest{OciRuntime: name}); err == nil {
		t.Fatalf("WarmRuntime %s with a program that cannot run: no error", name)
	}
	checkWarmLeftNothing(t, a.cfg)
}

// TestServiceRunc_WarmRuntimeRefusesUnknown: an unknown runtime is the
// caller's mistake, and nothing is created.
func TestServiceRunc_WarmRuntimeRefusesUnknown(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	_, err := a.WarmRuntime(ctxTimeout(t), &api.WarmRuntimeRequest{OciRuntime: "kata"})
	wantCode(t, err, codes.InvalidArgument, "")
	checkWarmLeftNothing(t, a.cfg)
}

// checkWarmLeftNothing fails if anything of the throwaway containers is
// left: a bundle, the runtime's state, a cgroup, a mount or a process
// whose root is in a bundle.
func checkWarmLeftNothing(t *testing.T, cfg container.Config) {
	t.Helper()
	for _, id := range []string{container.WarmID, container.WarmAppID} {
		// The cgroup: cgroup v2's, or each v1 hierarchy's on a hybrid host.
		cgroups, err := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/podvm", id))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range append([]string{
			filepath.Join(cfg.BundleDir, id),
			filepath.Join(cfg.StateDir, id),
			filepath.Join("/sys/fs/cgroup/podvm", id),
		}, cgroups...) {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s is left after the warm-up (stat: %v)", p, err)
			}
		}
	}
	// WarmID is a prefix of WarmAppID: these catch both.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, container.WarmID) {
			t.Errorf("mount left after the warm-up: %s", l)
		}
	}
	procs, err := filepath.Glob("/proc/[0-9]*/root")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if root, err := os.Readlink(p); err == nil && strings.Contains(root, container.WarmID) {
			t.Errorf("process %s left after the warm-up, its root %s", filepath.Dir(p), root)
		}
	}
}
