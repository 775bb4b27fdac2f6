package hostbed

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Containerd is a private containerd process, run by this process (its
// process group, killed if this process dies) with its log in a file of
// its own. Start it, Stop it; Kill and Start again restart it on the same
// configuration, root and state.
type Containerd struct {
	// Binary is containerd; its directory (containerd-shim-runc-v2) and
	// ShimDir (containerd-shim-podvm-v2) go first in its PATH.
	Binary  string
	ShimDir string
	// Config is the configuration file (see ContainerdConfig), Address
	// its gRPC socket, which Start waits for.
	Config  string
	Address string
	// LogPath is appended to; LogLevel is containerd's --log-level.
	LogPath  string
	LogLevel string

	cmd    *exec.Cmd
	exited chan struct{}
}

// ContainerdLogTail is how many lines of containerd's log an error quotes.
const ContainerdLogTail = 30

// ContainerdPath is the PATH a containerd needs to find its runc shim
// (beside binary) and the podvm shim (in shimDir), before the caller's.
func ContainerdPath(binary, shimDir string) string {
	return "PATH=" + filepath.Dir(binary) + ":" + shimDir + ":" + os.Getenv("PATH")
}

// Start runs containerd and waits until it serves on Address (30 s at
// most). On error the process is gone.
func (c *Containerd) Start() error {
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	c.exited = make(chan struct{})
	c.cmd = exec.Command(c.Binary, "--config", c.Config, "--log-level", c.LogLevel)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = append(os.Environ(), ContainerdPath(c.Binary, c.ShimDir))
	// Pdeathsig: containerd must not outlive a test binary that dies. The
	// signal follows the thread that forked, not the process: code in the
	// same process must not end threads (a goroutine that exits while
	// locked to its thread ends it), or containerd dies with that thread.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		c.cmd = nil
		return fmt.Errorf("start containerd: %w", err)
	}
	cmd, exited := c.cmd, c.exited
	go func() { cmd.Wait(); logf.Close(); close(exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("unix", c.Address); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd exited at start; log %s:\n%s", c.LogPath, TailLines(c.LogPath, ContainerdLogTail))
		default:
		}
		if time.Now().After(deadline) {
			c.Stop(0)
			return fmt.Errorf("containerd did not listen on %s within 30s; log %s:\n%s", c.Address, c.LogPath, TailLines(c.LogPath, ContainerdLogTail))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Started tells whether Start ran containerd (it may have exited since).
func (c *Containerd) Started() bool { return c.cmd != nil }

// Pid is containerd's process id (0 before Start).
func (c *Containerd) Pid() int {
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Kill ends containerd with SIGKILL, as a crash or an OOM kill would;
// shims and their VMs keep running.
func (c *Containerd) Kill() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Kill()
	<-c.exited
}

// Stop sends SIGTERM and waits up to grace, then kills containerd. Shims
// outlive it by design.
func (c *Containerd) Stop(grace time.Duration) {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.exited
	}
}
