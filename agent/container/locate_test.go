package container

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/cgroup"
)

// TestLocateCgroupOfExitedInit plays an init that died before the agent
// located its cgroup, as the warm-up container's runc init does right after
// runc create on this host: a zombie. On cgroup v1, /proc/<pid>/cgroup of an
// exiting task names the hierarchy's root, and a location read from it made
// the agent's clean-up kill every process of the memory hierarchy up to the
// test itself (docs/agent.md, "The kill that reached the test runner"). The
// location must be the spec's, whatever the pid reads as; with a relative
// path, none at all.
func TestLocateCgroupOfExitedInit(t *testing.T) {
	pid := zombie(t)
	want, err := cgroup.FromPath("/podvm/c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := locateCgroup("c1", pid, "/podvm/c1"); got != want {
		t.Errorf("cgroup of a container whose init is a zombie = %+v, want the spec's %+v", got, want)
	}
	if got := locateCgroup("c1", pid, "c1"); got.Known() {
		t.Errorf("relative path, init a zombie: cgroup %+v, want unknown", got)
	}
}

// TestLocateCgroupIgnoresReusedPid: a pid that now names another process,
// here the agent itself, must not move the container's cgroup there.
func TestLocateCgroupIgnoresReusedPid(t *testing.T) {
	want, err := cgroup.FromPath("/podvm/c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := locateCgroup("c1", os.Getpid(), "/podvm/c1"); got != want {
		t.Errorf("cgroup located from the agent's pid = %+v, want the spec's %+v", got, want)
	}
}

// zombie returns the pid of a child that has exited and is not reaped
// until the test ends.
func zombie(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if fields := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(fields) > 0 && fields[0] == "Z" {
			return pid
		}
	}
	t.Fatalf("pid %d did not become a zombie", pid)
	return 0
}
