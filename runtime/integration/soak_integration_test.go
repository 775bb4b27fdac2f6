package integration

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// soakSettings reads the soak's size: PODVM_SOAK_DURATION (default 60s,
// what `make test` runs; `make soak` runs longer) and PODVM_SOAK_PODS,
// the pods alive at once (default 3: this machine has 2 cores, and others
// run VMs on it too).
func soakSettings(t *testing.T) (time.Duration, int) {
	d, pods := 60*time.Second, 3
	if v := os.Getenv("PODVM_SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("PODVM_SOAK_DURATION=%q: %v", v, err)
		}
	}
	if v := os.Getenv("PODVM_SOAK_PODS"); v != "" {
		var err error
		if pods, err = strconv.Atoi(v); err != nil || pods < 1 {
			t.Fatalf("PODVM_SOAK_PODS=%q: want a positive number", v)
		}
	}
	return d, pods
}

// TestSoakIntegration runs create/exec/delete cycles of podvm pods, several
// at once, for a while: each cycle runs a pod (with a host cgroup), starts
// a container, execs into it three times checking the output, stops and
// removes the container, stops and removes the pod, and checks that
// nothing of it is left. It reports the counts, the cycle times, every
// failure (expected: none) and the final leak check.
func TestSoakIntegration(t *testing.T) {
	duration, workers := soakSettings(t)
	h := startCRIHarness(t)
	// The harness bounds its crictl calls by 5 minutes in all; a soak
	// runs longer, and a call killed half-way leaves a pod no cycle owns.
	// Its bound: the soak, plus a last cycle whose calls all time out.
	ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Minute)
	t.Cleanup(cancel)
	h.ctx = ctx
	parent := testCgroupParent(t, "soak-uid")
	ctrdRSS := rssKiB(h.c.Pid())

	type result struct {
		took time.Duration
		err  error
	}
	var (
		mu      sync.Mutex
		results []result
		execs   int
	)
	end := time.Now().Add(duration)
	var wg sync.WaitGroup
	for w := range workers {
		name := fmt.Sprintf("soak-%d", w)
		podCfg := h.podConfig(name, map[string]any{"cgroup_parent": parent})
		ctrCfg := h.containerConfig(name+"-ctr", nil, "sleep", "100000")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cycle := 0; time.Now().Before(end); cycle++ {
				start := time.Now()
				n, err := soakCycle(h, podCfg, ctrCfg, parent, cycle)
				mu.Lock()
				results = append(results, result{time.Since(start), err})
				execs += n
				mu.Unlock()
				if err != nil {
					// Start the next cycle clean, removing this worker's
					// pod only: the other workers' pods are mid-cycle.
					removePodsNamed(h, name)
				}
			}
		}()
	}
	wg.Wait()

	var failures []string
	var times []time.Duration
	for _, r := range results {
		times = append(times, r.took)
		if r.err != nil {
			failures = append(failures, r.err.Error())
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	pct := func(p float64) time.Duration {
		if len(times) == 0 {
			return 0
		}
		return times[min(len(times)-1, int(p*float64(len(times))))].Round(time.Millisecond)
	}
	leaks := h.c.CRILeaks()
	// The pod cgroup is the kubelet's (here the test's): only sandbox
	// cgroups below it would be podvm's.
	for _, d := range hostbed.CgroupDirs(parent) {
		if ents, _ := os.ReadDir(d); hasDir(ents) {
			leaks = append(leaks, "host cgroups left below "+d)
		}
	}
	t.Logf("soak: %s with %d pods at once: %d cycles (one pod, one container, three execs each; %d execs ran), %d failed; cycle p50 %s, p95 %s, max %s; containerd RSS %d -> %d KiB; leaks: %d",
		duration, workers, len(results), execs, len(failures), pct(0.5), pct(0.95), pct(1), ctrdRSS, rssKiB(h.c.Pid()), len(leaks))
	if len(results) == 0 {
		t.Errorf("no cycle ran")
	}
	for _, f := range failures {
		t.Errorf("cycle failed: %s", f)
	}
	if len(failures) > 0 {
		// A call the guest never answered: the shim copied the guest
		// console's tail (with the agent's own report) into its log.
		for _, l := range h.c.LogLines() {
			if strings.Contains(l, "agent call got no answer") {
				t.Logf("shim: %s", l)
			}
		}
	}
	if len(leaks) > 0 {
		t.Errorf("left behind after the soak:\n  %s", strings.Join(leaks, "\n  "))
	}
}

// removePodsNamed force-removes the pods whose metadata name is name.
func removePodsNamed(h *criHarness, name string) {
	r := h.c.Crictl(h.ctx, "pods", "--quiet", "--name", "^"+name+"$")
	for _, id := range strings.Fields(r.Stdout) {
		h.c.Crictl(h.ctx, "rmp", "--force", id)
	}
}

func hasDir(ents []os.DirEntry) bool {
	for _, e := range ents {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// soakCycle is one pod's life; it returns the execs it ran and the first
// failure.
func soakCycle(h *criHarness, podCfg, ctrCfg, parent string, cycle int) (int, error) {
	run := func(args ...string) (string, error) {
		r := h.c.Crictl(h.ctx, args...)
		if r.ExitCode != 0 {
			return "", fmt.Errorf("cycle %d: crictl %s: exit %d: %s", cycle, args[0], r.ExitCode, lastLine(r.Stderr))
		}
		return strings.TrimSpace(r.Stdout), nil
	}
	pod, err := run("runp", "--runtime", "podvm", podCfg)
	if err != nil {
		return 0, err
	}
	ctr, err := run("create", pod, ctrCfg, podCfg)
	if err != nil {
		return 0, err
	}
	if _, err := run("start", ctr); err != nil {
		return 0, err
	}
	execs := 0
	for i := range 3 {
		want := fmt.Sprintf("cycle-%d-exec-%d", cycle, i)
		got, err := run("exec", ctr, "echo", want)
		if err != nil {
			return execs, err
		}
		execs++
		if got != want {
			return execs, fmt.Errorf("cycle %d: exec printed %q, want %q", cycle, got, want)
		}
	}
	for _, args := range [][]string{{"stop", "-t", "5", ctr}, {"rm", ctr}, {"stopp", pod}, {"rmp", pod}} {
		if _, err := run(args...); err != nil {
			return execs, err
		}
	}
	var leaks []string
	for range 50 {
		leaks = append(hostbed.Leaks(pod), hostbed.CgroupLeaks(parent+"/"+pod)...)
		leaks = append(leaks, h.c.ShimSocketLeaks("k8s.io", pod)...)
		if len(leaks) == 0 {
			return execs, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return execs, fmt.Errorf("cycle %d: pod %s left %s", cycle, pod, strings.Join(leaks, "; "))
}
