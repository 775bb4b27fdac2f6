package integration

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds of what a hostile guest may cost the host; see
// docs/reliability.md, "Hostile-guest suite".
const (
	hostileWatch       = 10 * time.Second // how long the attacks run side by side
	hostileShimGrowKiB = 32 << 10         // a shim's RSS growth under attack
	hostileRunBytes    = 16 << 20         // a sandbox's state directory in /run
	hostileDeadline    = 10 * time.Second // the CRI call deadline (the kubelet's)
	hostileCallBound   = 20 * time.Second // when such a call must have failed (an ExecSync's deadline is its own timeout plus the call's)
	hostileRemoveBound = 45 * time.Second // stopp and rmp of a pod, a silent guest's included (its kill is confirmed by the shim after 10 s)
)

// TestHostileGuestIntegration runs a well-behaved podvm pod (the victim)
// beside pods whose VM's PID 1 is a hostile agent (hostileagent): one
// flooding OOM events naming the victim's containers, one forging its
// replies, one never answering. Through the real shim, containerd and
// QEMU it asserts what the host keeps: the shims' memory and the pods'
// /run bounded, the victim never reported OOM-killed and still answering
// exec, the forged memory figure raised to the host's floor, calls to the
// silent guest failing in bounded time, and nothing left after removal.
func TestHostileGuestIntegration(t *testing.T) {
	b := startHostileBed(t)
	victimCfg := b.podConfig("hostile-victim", nil)
	victimPod := b.runPod(victimCfg)
	victim := b.startContainer(victimPod, victimCfg, b.containerConfig("victim", nil, "sleep", "1000"))

	b.writeConfig(t, "oom", []string{victim, victimPod})
	oomPod, oomCtr := b.runHostilePod("oom", nil)
	forgePod, forgeCtr := b.runHostilePod("forge", map[string]any{"cgroup_parent": testCgroupParent(t, "hostile-forge-uid")})
	lorisPod, lorisCtr := b.runHostilePod("loris", nil)
	pods := map[string]string{"oom": oomPod, "forge": forgePod, "loris": lorisPod}

	t.Run("bounded", func(t *testing.T) { hostileWatchBounds(t, b, pods, victim) })
	t.Run("victim untouched", func(t *testing.T) {
		if r := b.inspect(victim).Status; r.Reason == "OOMKilled" || r.State != "CONTAINER_RUNNING" {
			t.Errorf("victim %s: state %s, reason %q; want running, never OOMKilled", victim, r.State, r.Reason)
		}
		if out, d := b.crictlTimed("exec", "-s", "--timeout", "30", victim, "echo", "alive"); out != "alive" {
			t.Errorf("victim exec: %q after %s, want alive", out, d)
		}
		// The shim believes a guest about its own containers only: the
		// flood reached CRI, so the victim's clean status means something.
		if r := b.inspect(oomCtr).Status.Reason; r != "OOMKilled" {
			t.Errorf("the flooding pod's own container: reason %q; want OOMKilled (the flood never reached CRI?)", r)
		}
	})
	t.Run("forged replies", func(t *testing.T) { hostileForged(t, b, forgePod, forgeCtr) })
	t.Run("silent guest", func(t *testing.T) { hostileSilent(t, b, lorisCtr) })
	t.Run("removal leaves nothing", func(t *testing.T) {
		for _, a := range hostileAttacks {
			if pods[a] == "" {
				continue
			}
			start := time.Now()
			leaks := b.removePod(pods[a])
			d := time.Since(start).Round(time.Millisecond)
			t.Logf("%s pod removed in %s", a, d)
			if d > hostileRemoveBound {
				t.Errorf("the %s pod took %s to remove, bound %s", a, d, hostileRemoveBound)
			}
			if len(leaks) > 0 {
				t.Errorf("the %s pod %s left:\n  %s", a, pods[a], strings.Join(leaks, "\n  "))
			}
		}
	})
}

// hostileWatchBounds samples the hostile pods' shims and state
// directories while the attacks run, and the victim's status.
func hostileWatchBounds(t *testing.T, b *hostileBed, pods map[string]string, victim string) {
	first, peak, runPeak := map[string]int{}, map[string]int{}, map[string]int64{}
	for end := time.Now().Add(hostileWatch); time.Now().Before(end); time.Sleep(time.Second) {
		for a, pod := range pods {
			rss := rssKiB(b.shimOf(pod))
			if rss == 0 {
				t.Fatalf("the %s pod's shim is gone", a)
			}
			if first[a] == 0 {
				first[a] = rss
			}
			peak[a] = max(peak[a], rss)
			runPeak[a] = max(runPeak[a], runBytes(filepath.Join("/run/podvm/sandboxes", pod)))
		}
		if r := b.inspect(victim).Status.Reason; r == "OOMKilled" {
			t.Fatalf("victim %s reported OOMKilled: a guest named another pod's container", victim)
		}
	}
	for a := range pods {
		t.Logf("%s pod: shim RSS %d -> peak %d KiB; /run state peak %d bytes", a, first[a], peak[a], runPeak[a])
		if peak[a]-first[a] > hostileShimGrowKiB {
			t.Errorf("%s pod: shim RSS grew %d KiB under attack, bound %d KiB", a, peak[a]-first[a], hostileShimGrowKiB)
		}
		if runPeak[a] > hostileRunBytes {
			t.Errorf("%s pod: state directory reached %d bytes, bound %d", a, runPeak[a], hostileRunBytes)
		}
	}
}

// hostileForged checks what the host makes of forged replies.
func hostileForged(t *testing.T, b *hostileBed, pod, ctr string) {
	if s := b.podState(pod); s != "SANDBOX_READY" {
		t.Errorf("pod with oversized guest details: %s", s)
	}
	// The guest reports no memory at all; the host's figure of the VM is
	// the floor (docs/design.md, memory floor rule).
	var st struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct {
					Value string `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	out := b.crictl("stats", "-o", "json", "--id", ctr)
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Stats) != 1 {
		t.Fatalf("crictl stats: %v\n%s", err, out)
	}
	ws, _ := strconv.ParseUint(st.Stats[0].Memory.WorkingSetBytes.Value, 10, 64)
	t.Logf("forged stats: working set %d bytes (the guest said 0)", ws)
	if ws < 8<<20 || ws > 4<<30 {
		t.Errorf("working set of a guest reporting none: %d bytes; want the host's figure of the VM (8 MiB .. 4 GiB)", ws)
	}
	// An endless exec output: the call ends by its deadline, and the
	// shim's memory stays bounded meanwhile (measured after).
	shim, before := b.shimOf(pod), rssKiB(b.shimOf(pod))
	r := b.crictlWithin(hostileDeadline, "exec", "-s", "--timeout", "5", ctr, "true")
	t.Logf("exec with endless forged output: exit %d after %s: %.300s", r.ExitCode, r.Duration.Round(time.Millisecond), lastLine(r.Stderr))
	if r.ExitCode == 0 || r.Duration > hostileCallBound {
		t.Errorf("exec with endless forged output: exit %d after %s; want a failure within %s", r.ExitCode, r.Duration, hostileCallBound)
	}
	if after := rssKiB(shim); after-before > hostileShimGrowKiB {
		t.Errorf("shim RSS %d -> %d KiB relaying endless forged output, bound +%d KiB", before, after, hostileShimGrowKiB)
	}
}

// hostileSilent checks that calls to a guest that never answers end in
// bounded time: an exec fails; stats may come back without the guest's
// figures (the shim gives the guest statsTimeout, and CRI then answers
// with what it has), as long as the kubelet is not held.
func hostileSilent(t *testing.T, b *hostileBed, ctr string) {
	for _, args := range [][]string{{"stats", "-o", "json", "--id", ctr}, {"exec", "-s", "--timeout", "5", ctr, "true"}} {
		r := b.crictlWithin(hostileDeadline, args...)
		d := r.Duration.Round(time.Millisecond)
		t.Logf("crictl %s against a silent guest: exit %d after %s: %.300s %.300s", args[0], r.ExitCode, d, lastLine(r.Stderr), r.Stdout)
		if r.Duration > hostileCallBound || (args[0] == "exec" && r.ExitCode == 0) {
			t.Errorf("crictl %s: exit %d after %s; want an answer within %s (a failure, for exec)", args[0], r.ExitCode, d, hostileCallBound)
		}
	}
}
