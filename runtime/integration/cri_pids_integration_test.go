package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// TestCRIPodPidsLimitIntegration sets pids.max on a pod's host cgroup, as
// the kubelet does for podPidsLimit, before the pod starts: inside the
// guest the pod's processes together must stop at that limit too. The
// container forks sleepers until fork fails and reports how many it got.
func TestCRIPodPidsLimitIntegration(t *testing.T) {
	const limit, attempts = 40, 70
	h := startCRIHarness(t)
	parent := testCgroupParent(t, "pids-pod-uid")
	if _, err := hostbed.MakeCgroup(parent); err != nil {
		t.Fatal(err)
	}
	pidsMax := filepath.Join("/sys/fs/cgroup/pids", parent, "pids.max")
	if !fileExists(pidsMax) {
		pidsMax = filepath.Join("/sys/fs/cgroup", parent, "pids.max") // cgroup v2
	}
	if err := os.WriteFile(pidsMax, []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Fatal(err)
	}
	podCfg := h.podConfig("pids-pod", map[string]any{"cgroup_parent": parent})
	pod := h.runPod(podCfg)

	// ash exits when a fork fails; its EXIT trap still reports the count.
	script := fmt.Sprintf(`i=0; trap 'echo spawned $i' EXIT; while [ $i -lt %d ]; do sleep 1000 & i=$((i+1)); done`, attempts)
	// A memory limit too: the guest's runc must still get the memory
	// controller below the pod cgroup the agent made for the pids limit.
	mem := map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 64 << 20}}
	ctr := h.startContainer(pod, podCfg, h.containerConfig("forker", mem, "sh", "-c", script))
	h.waitFor("forker exits", 60*time.Second, func() bool { return h.inspect(ctr).Status.State == "CONTAINER_EXITED" })
	r := h.c.Crictl(h.ctx, "logs", ctr) // the container's stderr comes on crictl's
	logs := r.Stdout + r.Stderr
	m := regexp.MustCompile(`spawned (\d+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("forker printed no count:\n%s", logs)
	}
	spawned, _ := strconv.Atoi(m[1])
	qemu, fsd := hostbed.VMProcesses(pod)
	hostTasks := "?"
	if len(qemu) == 1 && len(fsd) == 1 {
		hostTasks = fmt.Sprintf("qemu %d threads, virtiofsd %d", hostbed.Threads(qemu[0]), hostbed.Threads(fsd[0]))
	}
	t.Logf("pod pids limit %d: %d sleepers coexisted with the pause process and the shell; on the host: %s", limit, spawned, hostTasks)
	// The pause process (a Go program, a few threads) and the shell count
	// too; anything near the limit shows the limit, not guest memory,
	// stopped the forks.
	if spawned >= limit-1 || spawned < limit-10 {
		t.Errorf("%d sleepers coexisted; want fewer than the pod's limit of %d, and not far fewer", spawned, limit)
	}
	if !strings.Contains(logs, "can't fork") {
		t.Errorf("the forker did not run into a fork failure:\n%s", logs)
	}
	if st := h.inspect(ctr).Status; st.ExitCode == 0 {
		t.Errorf("forker exit code 0; ash exits 2 after a failed fork")
	}
}
