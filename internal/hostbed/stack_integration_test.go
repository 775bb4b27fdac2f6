package hostbed

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vishvananda/netlink"
)

// TestStackIntegration starts a stack and stops it, and starts one whose
// containerd cannot start: in both cases nothing of it is left (bridge,
// mounts), and what it serves while up is there.
func TestStackIntegration(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a bridge, containerd)")
	}
	img, err := buildImage("stack-test", v1.Config{Cmd: []string{"true"}}, nil, []*layerBuilder{fileLayer("marker", 0o644, nil)})
	if err != nil {
		t.Fatal(err)
	}
	o := StackOptions{
		Images:  []Image{{Refs: []string{"registry.k8s.io/podvm-stack-test:1"}, Image: img}},
		Network: &BridgeOptions{Name: "podvm-stack-test", Bridge: "podvm-hbtest0", SubnetOctet: 215, Logf: t.Logf},
		ShimDir: t.TempDir(), LogLevel: "info",
	}
	bridgeGone := func(when string) {
		if _, err := netlink.LinkByName(o.Network.Bridge); err == nil {
			t.Errorf("%s: bridge %s left", when, o.Network.Bridge)
		}
	}

	o.Dir, o.Containerd = shortTempDir(t), "/nonexistent/containerd"
	if s, err := StartStack(o); err == nil {
		s.Stop(0)
		t.Fatal("a stack whose containerd cannot start: no error")
	} else {
		t.Logf("as expected: %v", err)
	}
	bridgeGone("after a failed start")

	o.Containerd = filepath.Join(cacheDir(), "tools", "containerd-v2.4.2", "bin", "containerd")
	if _, err := os.Stat(o.Containerd); err != nil {
		if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("containerd missing: %v", err)
		}
		t.Skipf("needs %s (`ci/install-tools.sh containerd`)", o.Containerd)
	}
	o.Dir = shortTempDir(t)
	s, err := StartStack(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(0)
	if conn, err := net.Dial("unix", s.Address); err != nil {
		t.Errorf("containerd does not serve on %s: %v", s.Address, err)
	} else {
		conn.Close()
	}
	if _, err := os.Stat(filepath.Join(s.CertsDir, "registry.k8s.io", "hosts.toml")); err != nil {
		t.Errorf("certs.d: %v", err)
	}
	if _, err := netlink.LinkByName(o.Network.Bridge); err != nil {
		t.Errorf("bridge %s: %v", o.Network.Bridge, err)
	}
	if err := s.Stop(5 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	bridgeGone("after Stop")
	if m := MountsUnder(o.Dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if conn, err := net.Dial("unix", s.Address); err == nil {
		conn.Close()
		t.Errorf("containerd still serves after Stop")
	}
}

// shortTempDir is a temporary directory with a path short enough for
// containerd's sockets.
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "podvm-hb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// cacheDir is where ci/install-tools.sh caches the pinned host tools.
func cacheDir() string {
	if cache := os.Getenv("PODVM_CACHE"); cache != "" {
		return cache
	}
	return "/var/cache/podvm"
}
