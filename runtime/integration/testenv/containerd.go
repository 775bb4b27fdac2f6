package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Containerd is a private containerd instance: its own root, state, sockets
// and log, stopped when the test ends.
type Containerd struct {
	env       *Env
	Dir       string
	Address   string
	Namespace string
	LogPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	crictl    string // set for a CRI containerd
	cfgPath   string
}

// noCRIPlugins are disabled in a containerd without CRI: the ctr tests
// need none of them, and NRI would otherwise open a host-wide socket.
const noCRIPlugins = `"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"`

// StartContainerd starts containerd with config extra appended to the
// generated base configuration.
func StartContainerd(t testing.TB, e *Env, extra string) *Containerd {
	t.Helper()
	return startContainerd(t, e, noCRIPlugins, extra)
}

// startContainerd starts containerd with the plugins in disabled (a TOML
// list's items) turned off and extra appended to the base configuration.
func startContainerd(t testing.TB, e *Env, disabled, extra string) *Containerd {
	t.Helper()
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "podvm-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{env: e, Dir: dir, Address: filepath.Join(dir, "c.sock"), Namespace: "podvm-test",
		LogPath: filepath.Join(dir, "containerd.log"), exited: make(chan struct{})}
	cfg := fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
disabled_plugins = [%[8]s]

[plugins."io.containerd.server.v1.grpc"]
  address = %[3]q
[plugins."io.containerd.server.v1.ttrpc"]
  address = %[4]q
[plugins."io.containerd.server.v1.debug"]
  address = %[5]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
%[7]s
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc",
		filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"), extra, disabled)
	c.cfgPath = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop(t) })
	c.start(t)
	return c
}

// start runs containerd (its log appended to) and waits until it serves.
func (c *Containerd) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	c.exited = make(chan struct{})
	c.cmd = exec.Command(c.env.Containerd, "--config", c.cfgPath, "--log-level", "debug")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.env.Containerd)+":"+filepath.Join(c.env.Prefix, "bin")+":"+os.Getenv("PATH"))
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start containerd: %v", err)
	}
	cmd, exited := c.cmd, c.exited
	go func() { cmd.Wait(); logf.Close(); close(exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("unix", c.Address); err == nil {
			conn.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("containerd exited at start; log %s:\n%s", c.LogPath, TailLines(c.LogPath, 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen on %s within 30s; log:\n%s", c.Address, TailLines(c.LogPath, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends containerd with SIGKILL, as a crash or an OOM kill would;
// shims and their VMs keep running.
func (c *Containerd) Kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// Start runs containerd again after Kill, on the same configuration,
// root and state: it reconnects to the shims still running and cleans up
// after those that are gone.
func (c *Containerd) Start(t testing.TB) { c.start(t) }

// Pid is containerd's process id.
func (c *Containerd) Pid() int { return c.cmd.Process.Pid }

func (c *Containerd) stop(t testing.TB) {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	if t.Failed() {
		t.Logf("containerd log (%s), last lines:\n%s", c.LogPath, TailLines(c.LogPath, 60))
	}
	// Snapshots are overlay mounts under root: never leave one behind.
	for _, mp := range mountsUnder(c.Dir) {
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
func TailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogLines returns containerd's log so far, shim lines included, line by
// line.
func (c *Containerd) LogLines() []string {
	b, _ := os.ReadFile(c.LogPath)
	return strings.Split(string(b), "\n")
}
