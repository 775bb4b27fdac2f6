package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// testContainerd is a private containerd instance started as a hostbed.Stack:
// its own root, state, sockets and log (and, for a CRI containerd, a
// registry and a pod network), stopped when the test ends.
type testContainerd struct {
	*hostbed.Stack
	Namespace string
	LogPath   string
	env       *testEnv
	crictl    string // set for a CRI containerd
}

// startContainerd starts containerd without CRI, with config extra
// appended to the generated base configuration.
func startContainerd(t testing.TB, e *testEnv, extra string) *testContainerd {
	t.Helper()
	return startStack(t, e, hostbed.StackOptions{Extra: extra})
}

// startStack starts the stack o describes (Dir and the binaries filled in
// here) and stops it when the test ends, after the cleanups registered
// later have run.
func startStack(t testing.TB, e *testEnv, o hostbed.StackOptions) *testContainerd {
	t.Helper()
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "podvm-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	o.Dir, o.Containerd, o.ShimDir, o.LogLevel = dir, e.Containerd, filepath.Join(e.Prefix, "bin"), "debug"
	if o.Network != nil {
		o.Network.Logf = t.Logf
	}
	s, err := hostbed.StartStack(o)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	c := &testContainerd{Stack: s, Namespace: "podvm-test", LogPath: s.Containerd.LogPath, env: e}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// Kill ends containerd with SIGKILL, as a crash or an OOM kill would;
// shims and their VMs keep running.
func (c *testContainerd) Kill() { c.Containerd.Kill() }

// Start runs containerd again after Kill, on the same configuration,
// root and state: it reconnects to the shims still running and cleans up
// after those that are gone.
func (c *testContainerd) Start(t testing.TB) {
	t.Helper()
	if err := c.Containerd.Start(); err != nil {
		t.Fatal(err)
	}
}

// Pid is containerd's process id.
func (c *testContainerd) Pid() int { return c.Containerd.Pid() }

// stop stops the stack; a failed test keeps the work directory and gets
// containerd's last log lines.
func (c *testContainerd) stop(t testing.TB) {
	if err := c.Stack.Stop(10 * time.Second); err != nil {
		t.Errorf("stop containerd, its pod network and registry: %v", err)
	}
	if t.Failed() {
		t.Logf("containerd log (%s), last lines:\n%s", c.LogPath, hostbed.TailLines(c.LogPath, 60))
		return
	}
	os.RemoveAll(c.Dir)
}

// PodvmShims lists the containerd-shim-podvm-v2 daemons this containerd
// started.
func (c *testContainerd) PodvmShims() []hostbed.Process { return hostbed.PodvmShims(c.Address) }

// VMs lists the pod VMs of this containerd's podvm shims whose QEMU has
// been spawned.
func (c *testContainerd) VMs() []hostbed.VM { return hostbed.PodVMs(c.Address) }

// cmdResult is one finished ctr or crictl command.
type cmdResult struct {
	Stdout, Stderr string
	ExitCode       int
	Duration       time.Duration
}

// run runs cmd (stdin may be nil) and returns its result; clean, if set,
// filters its stderr.
func run(cmd *exec.Cmd, stdin []byte, clean func(string) string) cmdResult {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := cmdResult{Stdout: out.String(), Stderr: errb.String(), Duration: time.Since(start)}
	if clean != nil {
		r.Stderr = clean(r.Stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		r.ExitCode = -1
		r.Stderr += err.Error()
	}
	return r
}

// Ctr runs ctr against this containerd with stdin (may be nil).
func (c *testContainerd) Ctr(ctx context.Context, stdin []byte, args ...string) cmdResult {
	full := append([]string{"--address", c.Address, "--namespace", c.Namespace}, args...)
	return run(exec.CommandContext(ctx, c.env.Ctr, full...), stdin, withoutCtrWarnings)
}

// MustCtr runs ctr and fails the test on a non-zero exit.
func (c *testContainerd) MustCtr(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := c.Ctr(ctx, nil, args...)
	if r.ExitCode != 0 {
		t.Fatalf("ctr %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// withoutCtrWarnings drops ctr's own log lines about the host (on a cgroup
// v1 host every ctr call warns that v1 is deprecated), which would otherwise
// be mistaken for the container's stderr.
func withoutCtrWarnings(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "time=\"") && strings.Contains(l, "level=warning") && strings.Contains(l, "DEPRECATION") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "")
}

// LogLines returns containerd's log so far, shim lines included, line by
// line.
func (c *testContainerd) LogLines() []string {
	b, _ := os.ReadFile(c.LogPath)
	return strings.Split(string(b), "\n")
}
