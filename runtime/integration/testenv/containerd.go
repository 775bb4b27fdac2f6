package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/ci/testbed"
)

// Containerd is a private containerd instance: its own root, state, sockets
// and log, stopped when the test ends.
type Containerd struct {
	env       *Env
	Dir       string
	Address   string
	Namespace string
	LogPath   string
	proc      *testbed.Containerd
	crictl    string // set for a CRI containerd
}

// StartContainerd starts containerd with config extra appended to the
// generated base configuration.
func StartContainerd(t testing.TB, e *Env, extra string) *Containerd {
	t.Helper()
	return startContainerd(t, e, func(dir, address string) testbed.ContainerdConfig {
		return testbed.ContainerdConfig{Dir: dir, Address: address, DisabledPlugins: testbed.NoCRIPlugins, Extra: extra}
	})
}

// startContainerd starts containerd with the configuration cfg gives for
// its directory and socket.
func startContainerd(t testing.TB, e *Env, cfg func(dir, address string) testbed.ContainerdConfig) *Containerd {
	t.Helper()
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "podvm-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{env: e, Dir: dir, Address: filepath.Join(dir, "c.sock"), Namespace: "podvm-test",
		LogPath: filepath.Join(dir, "containerd.log")}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg(dir, c.Address).Render()), 0o600); err != nil {
		t.Fatal(err)
	}
	c.proc = &testbed.Containerd{Binary: e.Containerd, ShimDir: filepath.Join(e.Prefix, "bin"), Config: cfgPath,
		Address: c.Address, LogPath: c.LogPath, LogLevel: "debug"}
	t.Cleanup(func() { c.stop(t) })
	c.start(t)
	return c
}

// start runs containerd (its log appended to) and waits until it serves.
func (c *Containerd) start(t testing.TB) {
	t.Helper()
	if err := c.proc.Start(); err != nil {
		t.Fatal(err)
	}
}

// Kill ends containerd with SIGKILL, as a crash or an OOM kill would;
// shims and their VMs keep running.
func (c *Containerd) Kill() { c.proc.Kill() }

// Start runs containerd again after Kill, on the same configuration,
// root and state: it reconnects to the shims still running and cleans up
// after those that are gone.
func (c *Containerd) Start(t testing.TB) { c.start(t) }

// Pid is containerd's process id.
func (c *Containerd) Pid() int { return c.proc.Pid() }

func (c *Containerd) stop(t testing.TB) {
	if !c.proc.Started() {
		return
	}
	c.proc.Stop(10 * time.Second)
	if t.Failed() {
		t.Logf("containerd log (%s), last lines:\n%s", c.LogPath, TailLines(c.LogPath, 60))
	}
	// Snapshots are overlay mounts under root: never leave one behind.
	for _, mp := range testbed.MountsUnder(c.Dir) {
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	if !t.Failed() {
		os.RemoveAll(c.Dir)
	}
}

// Result is one finished ctr command.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
	Duration       time.Duration
}

// Ctr runs ctr against this containerd with stdin (may be nil).
func (c *Containerd) Ctr(ctx context.Context, stdin []byte, args ...string) Result {
	full := append([]string{"--address", c.Address, "--namespace", c.Namespace}, args...)
	cmd := exec.CommandContext(ctx, c.env.Ctr, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: withoutCtrWarnings(errb.String()), Duration: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		r.ExitCode = -1
		r.Stderr += err.Error()
	}
	return r
}

// MustCtr runs ctr and fails the test on a non-zero exit.
func (c *Containerd) MustCtr(t testing.TB, args ...string) string {
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

// TailLines returns the last n lines of a log file, for failure messages.
func TailLines(path string, n int) string { return testbed.TailLines(path, n) }

// LogLines returns containerd's log so far, shim lines included, line by
// line.
func (c *Containerd) LogLines() []string {
	b, _ := os.ReadFile(c.LogPath)
	return strings.Split(string(b), "\n")
}
