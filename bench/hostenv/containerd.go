package hostenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/runtime/config"
)

// containerdConfig is a private containerd (config version 4) serving CRI
// on dir/c.sock with the runc and podvm handlers. runc keeps its state
// under dir/runc (RuncRoot), not in the host-wide /run/containerd/runc.
//
// gVisor is not a CRI handler here: under containerd's runc shim (its own
// shim cannot run on these machines) runsc makes a pod's second container
// part of the pause container's sandbox, whose output never reaches the
// shim and whose StopPodSandbox never returns. It is measured through
// `ctr run` instead.
func containerdConfig(dir string, t *Tools, podvmConfig, certsDir, sandboxImage string, n *network) string {
	rt := `plugins."io.containerd.cri.v1.runtime"`
	return fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
# NRI would open a host-wide socket.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[plugins."io.containerd.server.v1.grpc"]
  address = %[3]q
[plugins."io.containerd.server.v1.ttrpc"]
  address = %[4]q
[plugins."io.containerd.server.v1.debug"]
  address = %[5]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q

[plugins."io.containerd.grpc.v1.cri"]
  # Loopback and a free port: never 10010, which a host containerd may hold.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[7]q
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %[8]q

[%[9]s]
  # Without CAP_SYS_RESOURCE (these machines) runc fails with "can't get
  # final child's PID from pipe" unless CRI leaves oom_score_adj alone.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [%[9]s.cni]
    bin_dirs = [%[10]q]
    conf_dir = %[11]q
  [%[9]s.containerd]
    default_runtime_name = "runc"
    [%[9]s.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [%[9]s.containerd.runtimes.runc.options]
        BinaryName = %[12]q
        Root = %[15]q
        SystemdCgroup = false
    [%[9]s.containerd.runtimes.podvm]
      runtime_type = "io.containerd.podvm.v2"
      runtime_path = %[13]q
      [%[9]s.containerd.runtimes.podvm.options]
        ConfigPath = %[14]q
`,
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "c.sock"), filepath.Join(dir, "c.sock.ttrpc"),
		filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"), sandboxImage, certsDir,
		rt, t.CNIBinDir, n.confDir, t.Runc, t.Shim, podvmConfig, RuncRoot(dir))
}

// RuncRoot is where runc (and runsc) keep container state for the bench
// host in dir: `ctr run --runc-root` and the CRI runc handler's Root.
func RuncRoot(dir string) string { return filepath.Join(dir, "runc") }

// podvmConfig rewrites the installed podvm configuration with the
// benchmark's own state directory, so that its sandboxes (and the leak
// check) never mix with those of a test or cluster using the install.
func podvmConfig(installed []byte, stateDir string) ([]byte, error) {
	var m map[string]any
	if err := toml.Unmarshal(installed, &m); err != nil {
		return nil, fmt.Errorf("podvm config: %w", err)
	}
	rt, _ := m["runtime"].(map[string]any)
	if rt == nil {
		rt = map[string]any{}
		m["runtime"] = rt
	}
	rt["state_dir"] = stateDir
	out, err := toml.Marshal(m)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(out, "benchmark podvm config")
	if err != nil {
		return nil, err
	}
	if cfg.Runtime.StateDir != stateDir {
		return nil, fmt.Errorf("podvm config: state_dir is %q after rewriting, want %q", cfg.Runtime.StateDir, stateDir)
	}
	return out, nil
}

// containerd is the running daemon.
type containerd struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func startContainerd(dir string, t *Tools, cfg string, debug bool) (*containerd, error) {
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	c := &containerd{exited: make(chan struct{}), logPath: filepath.Join(dir, "containerd.log")}
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	level := "info"
	if debug {
		level = "debug"
	}
	c.cmd = exec.Command(t.Containerd, "--config", cfgPath, "--log-level", level)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(t.Containerd)+":"+filepath.Join(t.Prefix, "bin")+":"+os.Getenv("PATH"))
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	go func() { c.cmd.Wait(); logf.Close(); close(c.exited) }()
	sock := filepath.Join(dir, "c.sock")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("containerd exited at start; log %s:\n%s", c.logPath, tailLines(c.logPath, 20))
		default:
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("containerd did not listen on %s within 30s; log %s:\n%s", sock, c.logPath, tailLines(c.logPath, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *containerd) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// tailLines returns the last n lines of a file, for error messages.
func tailLines(path string, n int) string {
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
