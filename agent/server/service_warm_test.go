package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
)

// TestServiceRunc_WarmRuntimeLeavesNothing warms the runtime (runc, or
// crun with PODVM_TEST_CRUN set) twice, checks that its throwaway
// container left no bundle, runtime state, cgroup, mount or process, and
// that a real container runs after it.
func TestServiceRunc_WarmRuntimeLeavesNothing(t *testing.T) {
	a := startAgent(t, requireRunc(t))
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
	_, err := a.ListProcesses(ctxTimeout(t), &api.ListProcessesRequest{ContainerId: container.WarmID})
	wantCode(t, err, codes.NotFound, container.WarmID)

	const id = "after-warm"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, busyboxRootfs(t), "true"), Stdout: true}, true)
	if got := a.wait(t, id); got != 0 {
		t.Errorf("container after the warm-up exited %d, want 0", got)
	}
	a.remove(t, id)
}

// TestServiceRunc_WarmRuntimeRefusesUnknown: an unknown runtime is the
// caller's mistake, and nothing is created.
func TestServiceRunc_WarmRuntimeRefusesUnknown(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	_, err := a.WarmRuntime(ctxTimeout(t), &api.WarmRuntimeRequest{OciRuntime: "kata"})
	wantCode(t, err, codes.InvalidArgument, "")
	checkWarmLeftNothing(t, a.cfg)
}

// checkWarmLeftNothing fails if anything of the throwaway container is
// left: its bundle, the runtime's state, its cgroup, a mount or a process
// whose root is in its bundle.
func checkWarmLeftNothing(t *testing.T, cfg container.Config) {
	t.Helper()
	// The cgroup: cgroup v2's, or each v1 hierarchy's on a hybrid host.
	cgroups, err := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/podvm", container.WarmID))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{
		filepath.Join(cfg.BundleDir, container.WarmID),
		filepath.Join(cfg.StateDir, container.WarmID),
		filepath.Join("/sys/fs/cgroup/podvm", container.WarmID),
	}, cgroups...) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left after the warm-up (stat: %v)", p, err)
		}
	}
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
