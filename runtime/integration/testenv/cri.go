package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/ci/testbed"
)

// CRITools are the binaries a CRI containerd and its tests need besides
// those of Env.
type CRITools struct {
	Runc      string // runc for the runc handler (the reference)
	Critest   string
	Crictl    string
	CNIBinDir string
}

// RequireCRI returns the CRI tools or skips (fails under `make test`,
// like Require).
func RequireCRI(t testing.TB) *CRITools {
	t.Helper()
	tools := filepath.Join(cacheDir(), "tools")
	c := &CRITools{
		Runc:      filepath.Join(tools, "runc-v1.5.2", "bin", "runc"),
		Critest:   filepath.Join(tools, "cri-tools-v1.37.0", "bin", "critest"),
		Crictl:    filepath.Join(tools, "cri-tools-v1.37.0", "bin", "crictl"),
		CNIBinDir: "/usr/lib/cni",
	}
	missing := ""
	for _, f := range []struct{ path, fix string }{
		{c.Runc, "`ci/install-tools.sh runc`"},
		{c.Critest, "`ci/install-tools.sh cri-tools`"},
		{c.Crictl, "`ci/install-tools.sh cri-tools`"},
		{filepath.Join(c.CNIBinDir, "bridge"), "Debian package containernetworking-plugins"},
		{filepath.Join(c.CNIBinDir, "host-local"), "Debian package containernetworking-plugins"},
		{filepath.Join(c.CNIBinDir, "portmap"), "Debian package containernetworking-plugins"},
		{filepath.Join(c.CNIBinDir, "loopback"), "Debian package containernetworking-plugins"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			missing = fmt.Sprintf("%s (missing; %s provides it)", f.path, f.fix)
			break
		}
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); missing == "" && err != nil {
			missing = tool + " (Debian packages iproute2, iptables)"
		}
	}
	if missing != "" {
		if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("CRI test prerequisite missing: %s", missing)
		}
		t.Skipf("CRI test needs %s", missing)
	}
	return c
}

// CRIConfig is what a CRI containerd is wired to.
type CRIConfig struct {
	Tools *CRITools
	// RegistryConfigPath is a certs.d directory (registry config_path):
	// where every image pull goes.
	RegistryConfigPath string
	SandboxImage       string
	Network            *BridgeNetwork
}

// StartCRIContainerd starts a private containerd with CRI on its socket
// (Address serves both the runtime and the image service) and two runtime
// handlers: runc, the reference, and podvm, the installed shim, which finds
// the installed config beside itself. Pods still there when the test ends are removed before
// containerd stops, so CNI DEL runs for each.
func StartCRIContainerd(t testing.TB, e *Env, cfg CRIConfig) *Containerd {
	t.Helper()
	c := startContainerd(t, e, func(dir, address string) testbed.ContainerdConfig {
		return testbed.ContainerdConfig{Dir: dir, Address: address, DisabledPlugins: testbed.NoNRI,
			CRI: &testbed.CRIConfig{
				SandboxImage: cfg.SandboxImage, RegistryConfigPath: cfg.RegistryConfigPath,
				CNIBinDir: cfg.Network.BinDir, CNIConfDir: cfg.Network.ConfDir,
				Handlers: []testbed.Handler{
					testbed.RuncHandler("runc", cfg.Tools.Runc, ""),
					// No options: the shim finds its install's config,
					// e.ConfigPath; with options containerd 2.4 could not
					// start user namespace containers (PodvmHandler).
					testbed.PodvmHandler("podvm", e.ShimBinary, ""),
				},
			}}
	})
	c.crictl = cfg.Tools.Crictl
	// Pods with a user namespace run as an unprivileged host uid that must
	// traverse to their rootfs under state/ (as under /run/containerd,
	// which is 0711); MkdirTemp made the directory 0700.
	if err := os.Chmod(c.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.RemoveAllPods(); err != nil {
			t.Errorf("remove pods left at the end: %v", err)
		}
	})
	return c
}

// CRIEndpoint is the CRI runtime and image endpoint, as critest and
// crictl take it.
func (c *Containerd) CRIEndpoint() string { return "unix://" + c.Address }

// Crictl runs crictl against this containerd.
func (c *Containerd) Crictl(ctx context.Context, args ...string) Result {
	full := append([]string{"--runtime-endpoint", c.CRIEndpoint(), "--image-endpoint", c.CRIEndpoint(), "--timeout", "2m"}, args...)
	cmd := exec.CommandContext(ctx, c.crictl, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Duration: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		r.ExitCode = -1
		r.Stderr += err.Error()
	}
	return r
}

// RemoveAllPods stops and removes every pod and container, as the kubelet
// would on a node being drained.
func (c *Containerd) RemoveAllPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if r := c.Crictl(ctx, "rmp", "--all", "--force"); r.ExitCode != 0 {
		return fmt.Errorf("crictl rmp --all --force: exit %d: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return nil
}

// CRILeaks lists what pods left behind: pods and containers containerd
// still knows, mounts (container rootfs, pod network namespaces) under its
// directories, podvm's taps in the host namespace, and whatever the pod
// network holds.
func (c *Containerd) CRILeaks(n *BridgeNetwork) []string {
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range []struct{ kind, cmd string }{{"pod", "pods"}, {"container", "ps"}} {
		args := []string{q.cmd, "--quiet"}
		if q.cmd == "ps" {
			args = append(args, "--all")
		}
		r := c.Crictl(ctx, args...)
		if r.ExitCode != 0 {
			out = append(out, fmt.Sprintf("crictl %s failed: %s", q.cmd, strings.TrimSpace(r.Stderr)))
			continue
		}
		for _, id := range strings.Fields(r.Stdout) {
			out = append(out, fmt.Sprintf("CRI %s still listed: %s", q.kind, id))
		}
	}
	for _, mp := range testbed.MountsUnder(c.Dir) {
		out = append(out, "mount under containerd's dirs: "+mp)
	}
	for _, tap := range testbed.HostTaps() {
		out = append(out, "podvm tap in the host namespace: "+tap)
	}
	return append(out, n.Leaks()...)
}
