package hostenv

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/ci/testbed"
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
func containerdConfig(dir string, t *Tools, podvmConfig, certsDir, sandboxImage string, n *testbed.BridgeNetwork) string {
	return testbed.ContainerdConfig{
		Dir: dir, Address: filepath.Join(dir, "c.sock"), DisabledPlugins: testbed.NoNRI,
		CRI: &testbed.CRIConfig{
			SandboxImage: sandboxImage, RegistryConfigPath: certsDir, CNIBinDir: t.CNIBinDir, CNIConfDir: n.ConfDir,
			Handlers: []testbed.Handler{
				testbed.RuncHandler("runc", t.Runc, RuncRoot(dir)),
				testbed.PodvmHandler("podvm", t.Shim, podvmConfig),
			},
		},
	}.Render()
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

// startContainerd writes cfg to dir/containerd.toml and runs containerd
// on it, its log in dir/containerd.log.
func startContainerd(dir string, t *Tools, cfg string, debug bool) (*testbed.Containerd, error) {
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	level := "info"
	if debug {
		level = "debug"
	}
	c := &testbed.Containerd{Binary: t.Containerd, ShimDir: filepath.Join(t.Prefix, "bin"), Config: cfgPath,
		Address: filepath.Join(dir, "c.sock"), LogPath: filepath.Join(dir, "containerd.log"), LogLevel: level}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// containerdGrace is how long containerd may take to stop on SIGTERM.
const containerdGrace = 15 * time.Second
