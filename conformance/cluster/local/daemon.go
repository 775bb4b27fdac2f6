package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// The cluster's processes must outlive `podvm cluster up`, so they are
// daemons: each in its own session, with its own log file, and a pid file
// holding the pid and the process start time (so a recycled pid is never
// mistaken for our process). Nothing watches them after Up returns;
// Status reads the pid files and reports any that died.

type daemon struct {
	name string
	path string
	args []string
	env  []string // added to the environment
	// environ, when set, is the whole environment instead of ours plus
	// env; dir is the working directory; appendLog keeps the log's
	// earlier lines (a restart).
	environ   []string
	dir       string
	appendLog bool
}

func startDaemon(l layout, d daemon) (int, error) {
	mode := os.O_TRUNC
	if d.appendLog {
		mode = os.O_APPEND
	}
	logf, err := os.OpenFile(l.log(d.name), os.O_CREATE|os.O_WRONLY|mode, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log of %s: %w", d.name, err)
	}
	defer logf.Close()
	cmd := exec.Command(d.path, d.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), d.env...)
	if d.environ != nil {
		cmd.Env = d.environ
	}
	cmd.Dir = d.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s (%s): %w", d.name, d.path, err)
	}
	pid := cmd.Process.Pid
	start, err := processStartTime(pid)
	if err != nil {
		cmd.Process.Kill()
		return 0, fmt.Errorf("read start time of %s: %w", d.name, err)
	}
	if err := os.WriteFile(l.pidFile(d.name), fmt.Appendf(nil, "%d %d\n", pid, start), 0o644); err != nil {
		cmd.Process.Kill()
		return 0, err
	}
	// Reap it if it dies while we still run; after we exit, init does.
	go cmd.Wait()
	return pid, nil
}

// daemonPID returns the pid of a running daemon, or 0 with the reason it
// is not running.
func daemonPID(l layout, name string) (int, string) {
	b, err := os.ReadFile(l.pidFile(name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, "not started"
	} else if err != nil {
		return 0, err.Error()
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return 0, fmt.Sprintf("bad pid file %s", l.pidFile(name))
	}
	now, err := processStartTime(pid)
	if err != nil || now != start {
		return 0, "exited"
	}
	if st, _ := processState(pid); st == "Z" {
		return 0, "exited"
	}
	return pid, ""
}

// stopDaemon sends SIGTERM to the daemon's process group, waits up to
// grace, then kills it. Stopping a daemon that is not running is not an
// error.
func stopDaemon(l layout, name string, grace time.Duration) error {
	pid, _ := daemonPID(l, name)
	if pid != 0 {
		syscall.Kill(-pid, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) {
			if p, _ := daemonPID(l, name); p == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if p, _ := daemonPID(l, name); p != 0 {
			syscall.Kill(-pid, syscall.SIGKILL)
			time.Sleep(200 * time.Millisecond)
			if p, _ := daemonPID(l, name); p != 0 {
				return fmt.Errorf("%s (pid %d) survived SIGKILL", name, pid)
			}
		}
	}
	os.Remove(l.pidFile(name))
	return nil
}

// processStartTime is field 22 of /proc/PID/stat (clock ticks since boot).
func processStartTime(pid int) (uint64, error) {
	f, err := hostbed.ProcStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func processState(pid int) (string, error) {
	f, err := hostbed.ProcStat(pid)
	if err != nil {
		return "", err
	}
	return f[0], nil
}

// waitFor polls ready until it returns nil, failing early with the
// daemon's log tail if the daemon exits, or after timeout.
func waitFor(ctx context.Context, l layout, name string, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		if pid, why := daemonPID(l, name); pid == 0 {
			return fmt.Errorf("%s %s while starting; last lines of %s:\n%s", name, why, l.log(name), hostbed.TailLines(l.log(name), 25))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v; last lines of %s:\n%s", name, timeout, last, l.log(name), hostbed.TailLines(l.log(name), 25))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func dialReady(network, addr string) func() error {
	return func() error {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}
