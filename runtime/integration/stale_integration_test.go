package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// withConfigKey returns the config file text with one key's value replaced.
func withConfigKey(text, key, value string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, key+" = ") {
			l = key + " = " + value
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestFaultStaleStateIntegration: a crash that nobody cleaned up after
// (containerd and the shims killed, and containerd's own state gone, as a
// host restart with a persistent podvm state_dir leaves it) leaves each
// sandbox's state directory with its mounts. The next sandbox created on
// the host cleans them: its own id's directory at once, every other one
// whose lock no live shim holds by the sweep.
func TestFaultStaleStateIntegration(t *testing.T) {
	env := requireEnv(t)
	stateDir, err := os.MkdirTemp("", "pvst-") // short: socket paths live below it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	good, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte(withConfigKey(string(good), "state_dir", `"`+stateDir+`"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(p *podvmCtr, id string, args ...string) cmdResult {
		ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
		defer cancel()
		full := append([]string{"run", "--runtime", p.env.ShimBinary, "--runtime-config-path", cfg}, args...)
		return p.c.Ctr(ctx, nil, append(full, p.image, id, "sleep", "1000")...)
	}

	// The crash.
	before := newPodvmCtr(t)
	for _, id := range []string{"stale-a", "stale-b"} {
		if r := run(before, id, "-d"); r.ExitCode != 0 {
			t.Fatalf("ctr run -d %s: exit %d, %s", id, r.ExitCode, r.Stderr)
		}
	}
	shims := before.c.PodvmShims()
	before.c.Kill()
	for _, s := range shims {
		kill(t, "shim", s.Pid)
	}
	waitGone(t, "stale-a", "stale-b")
	// What a host restart also wipes: containerd's state, and the shim
	// sockets under /run/containerd/s, which no one else will remove.
	for _, l := range before.c.ShimSocketLeaks(before.c.Namespace, "stale-a", "stale-b") {
		os.Remove(l[strings.LastIndex(l, " ")+1:])
	}
	for _, id := range []string{"stale-a", "stale-b"} {
		left := hostbed.LeaksIn(stateDir, id)
		t.Logf("the crash left of %s:\n  %s", id, strings.Join(left, "\n  "))
		if len(left) == 0 {
			t.Fatalf("the crash left nothing of %s: the test does not test the sweep", id)
		}
	}
	// stale-b crashed long ago; stale-a is re-created under its own id.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(stateDir, "sandboxes", "stale-b", "lock"), old, old); err != nil {
		t.Fatal(err)
	}

	// The next use.
	after := newPodvmCtr(t)
	ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
	defer cancel()
	r := after.c.Ctr(ctx, nil, "run", "--rm", "--runtime", after.env.ShimBinary, "--runtime-config-path", cfg, after.image, "stale-a", "uname", "-r")
	if r.ExitCode != 0 || !strings.HasSuffix(strings.TrimSpace(r.Stdout), "-podvm") {
		t.Fatalf("ctr run stale-a after the crash: exit %d, %q %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	for _, id := range []string{"stale-a", "stale-b"} {
		// The new stale-a's shim destroys its VM after ctr's Delete has
		// answered and then exits: give it the moment assertNoLeaks gives.
		var left []string
		for range 50 {
			if left = hostbed.LeaksIn(stateDir, id); len(left) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("still there of %s after the next sandbox was created:\n  %s", id, strings.Join(left, "\n  "))
		}
	}
	log := strings.Join(after.c.LogLines(), "\n")
	for _, want := range []string{"cleaning up what a crashed podvm shim left of this sandbox", "removed sandboxes that crashed podvm shims left behind"} {
		if !strings.Contains(log, want) {
			t.Errorf("the shim did not log %q", want)
		}
	}
}

// waitGone waits until no QEMU or virtiofsd names any of ids.
func waitGone(t *testing.T, ids ...string) {
	t.Helper()
	for range 100 {
		alive := false
		for _, id := range ids {
			q, f := hostbed.VMProcesses(id)
			alive = alive || len(q)+len(f) > 0
		}
		if !alive {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("VM processes of %v outlived their shims", ids)
}
