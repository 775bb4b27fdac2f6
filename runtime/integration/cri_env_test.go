package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// criTools are the binaries a CRI containerd and its tests need besides
// those of testEnv.
type criTools struct {
	Runc      string // runc for the runc handler (the reference)
	Critest   string
	Crictl    string
	CNIBinDir string
}

// requireCRI returns the CRI tools or skips (fails under `make test`,
// like requireEnv).
func requireCRI(t testing.TB) *criTools {
	t.Helper()
	tools := filepath.Join(cacheDir(), "tools")
	c := &criTools{
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
	// The bridge is made over netlink; CNI's portmap and the leak check
	// need iptables.
	if _, err := exec.LookPath("iptables"); missing == "" && err != nil {
		missing = "iptables (Debian package iptables)"
	}
	if missing != "" {
		if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("CRI test prerequisite missing: %s", missing)
		}
		t.Skipf("CRI test needs %s", missing)
	}
	return c
}

// startCRI starts a hostbed.Stack for CRI tests: the test registry with
// every image critest pulls (and podvm's probe image), a pod network of
// its own (bridge podvm-test0 on a /24 of 10.213.0.0/16, with portmap),
// and a private containerd with CRI on its socket (Address serves both the
// runtime and the image service) and two runtime handlers: runc, the
// reference, and podvm, the installed shim, which finds the installed
// config beside itself. Everything it creates is removed when the test
// ends; pods still there are removed first, so CNI DEL runs for each.
// Handlers in extra are added after those two.
func startCRI(t testing.TB, e *testEnv, tools *criTools, extra ...hostbed.Handler) *testContainerd {
	t.Helper()
	start := time.Now()
	work := t.TempDir()
	images, err := hostbed.BuildCritestImages(e.BusyboxPath, "", work)
	if err != nil {
		t.Fatal(err)
	}
	c := startStack(t, e, hostbed.StackOptions{
		Images: images,
		// The bridge's name is fixed so that a bridge left by a killed
		// run is found and replaced by the next one; so there is one such
		// network per host at a time.
		Network: &hostbed.BridgeOptions{Name: "podvm-test", Bridge: "podvm-test0", BinDir: tools.CNIBinDir,
			SubnetOctet: 213, Portmap: true, RemoveCNICache: true},
		Handlers: append([]hostbed.Handler{
			hostbed.RuncHandler("runc", tools.Runc, ""),
			// No options: the shim finds its install's config,
			// e.ConfigPath; with options containerd 2.4 could not start
			// user namespace containers (hostbed.PodvmHandler).
			hostbed.PodvmHandler("podvm", e.ShimBinary, ""),
		}, extra...),
	})
	c.crictl = tools.Crictl
	t.Cleanup(func() {
		if err := c.RemoveAllPods(); err != nil {
			t.Errorf("remove pods left at the end: %v", err)
		}
	})
	t.Logf("test registry on %s: %d images; pod network %s on bridge %s; set up in %s",
		c.Registry.Addr, len(images), c.Network.Subnet, c.Network.Bridge, time.Since(start).Round(time.Millisecond))
	return c
}

// CRIEndpoint is the CRI runtime and image endpoint, as critest and
// crictl take it.
func (c *testContainerd) CRIEndpoint() string { return "unix://" + c.Address }

// Crictl runs crictl against this containerd.
func (c *testContainerd) Crictl(ctx context.Context, args ...string) cmdResult {
	full := append([]string{"--runtime-endpoint", c.CRIEndpoint(), "--image-endpoint", c.CRIEndpoint(), "--timeout", "2m"}, args...)
	return run(exec.CommandContext(ctx, c.crictl, full...), nil, nil)
}

// RemoveAllPods stops and removes every pod and container, as the kubelet
// would on a node being drained.
func (c *testContainerd) RemoveAllPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if r := c.Crictl(ctx, "rmp", "--all", "--force"); r.ExitCode != 0 {
		return fmt.Errorf("crictl rmp --all --force: exit %d: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return nil
}

// CRILeaks lists what pods left behind: pods and containers containerd
// still knows, and what they left on the host (Stack.HostLeaks).
func (c *testContainerd) CRILeaks() []string {
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
	return append(out, c.HostLeaks()...)
}
