package integration

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rssKiB is VmRSS of process pid (0 if it is gone).
func rssKiB(pid int) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// countingWriter counts what it discards.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// TestLoadStdioIntegration: a guest that floods stdout and a host that
// floods stdin. The shim relays a flood at a bounded memory cost, keeps
// answering other calls for the same container meanwhile, and stops the
// flooder promptly when told; a stdin larger than any buffer reaches the
// process intact, and one the process never reads does not keep its exit
// from being reported.
func TestLoadStdioIntegration(t *testing.T) {
	p := newPodvmCtr(t)
	cfg := p.env.ConfigPath

	t.Run("guest floods stdout", func(t *testing.T) {
		id := "podvm-flood-out"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, p.env.Ctr, "--address", p.c.Address, "--namespace", p.c.Namespace,
			"run", "--rm", "--runtime", p.env.ShimBinary, "--runtime-config-path", cfg, p.image, id, "cat", "/dev/zero")
		out := &countingWriter{}
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() { p.c.Ctr(context.Background(), nil, "container", "rm", id); assertNoLeaks(t, id) }()

		// Let the flood start, then watch it for a few seconds.
		var shim int
		deadline := time.Now().Add(30 * time.Second)
		for out.n.Load() == 0 || shim == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no output within 30s: %s", errb.String())
			}
			if s := p.c.PodvmShims(); len(s) == 1 {
				shim = s[0].Pid
			}
			time.Sleep(50 * time.Millisecond)
		}
		start, startBytes, startRSS := time.Now(), out.n.Load(), rssKiB(shim)
		maxRSS, slowest := startRSS, time.Duration(0)
		for range 5 {
			r := p.c.Ctr(ctx, nil, "task", "ps", id)
			if r.ExitCode != 0 {
				t.Errorf("ctr task ps during the flood: exit %d, %s", r.ExitCode, r.Stderr)
			}
			slowest = max(slowest, r.Duration)
			maxRSS = max(maxRSS, rssKiB(shim))
			time.Sleep(time.Second)
		}
		elapsed, moved := time.Since(start), out.n.Load()-startBytes
		rate := float64(moved) / elapsed.Seconds() / (1 << 20)
		t.Logf("flood: %.1f MiB/s through the shim for %s; shim RSS %d KiB at start, at most %d KiB; slowest ctr task ps %s",
			rate, elapsed.Round(time.Millisecond), startRSS, maxRSS, slowest.Round(time.Millisecond))
		if moved == 0 {
			t.Errorf("the flood stalled")
		}
		if maxRSS-startRSS > 64<<10 {
			t.Errorf("the shim grew by %d KiB while relaying the flood", maxRSS-startRSS)
		}
		if slowest > 5*time.Second {
			t.Errorf("ctr task ps took %s during the flood", slowest)
		}

		killed := time.Now()
		p.c.MustCtr(t, "task", "kill", "-s", "SIGKILL", id)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("ctr run still relaying 30s after SIGKILL")
		}
		t.Logf("ctr run ended %s after SIGKILL, exit %d, %.0f MiB relayed in all",
			time.Since(killed).Round(time.Millisecond), cmd.ProcessState.ExitCode(), float64(out.n.Load())/(1<<20))
		if cmd.ProcessState.ExitCode() != 137 {
			t.Errorf("exit %d after SIGKILL, want 137: %s", cmd.ProcessState.ExitCode(), errb.String())
		}
	})

	t.Run("host floods stdin", func(t *testing.T) {
		const size = 32 << 20
		in := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		start := time.Now()
		r := p.run(t, cfg, in, "podvm-flood-in", "wc", "-c")
		took := time.Since(start)
		if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(size) {
			t.Errorf("wc -c of %d bytes of stdin: exit %d, %q %s", size, r.ExitCode, r.Stdout, r.Stderr)
		}
		t.Logf("%d MiB of stdin counted in the guest in %s (%.1f MiB/s, boot included)", size>>20, took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds())
		assertNoLeaks(t, "podvm-flood-in")
	})

	t.Run("stdin nobody reads", func(t *testing.T) {
		id := "podvm-unread-in"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, p.env.Ctr, "--address", p.c.Address, "--namespace", p.c.Namespace,
			"run", "--rm", "--runtime", p.env.ShimBinary, "--runtime-config-path", cfg, p.image, id, "sh", "-c", "sleep 2; exit 3")
		// An endless stdin: the writer blocks once the pipes are full.
		cmd.Stdin = io.LimitReader(zeroReader{}, 1<<40)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		start := time.Now()
		err := cmd.Run()
		t.Logf("ctr run with endless unread stdin ended after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
			t.Errorf("want exit 3 soon after the process ended: %v, %s", err, errb.String())
		}
		p.c.Ctr(context.Background(), nil, "container", "rm", id)
		assertNoLeaks(t, id)
	})
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
