package benchhost

import (
	"path/filepath"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// stackOptions are the bench host's hostbed stack in dir: a registry
// serving images, a pod network of its own, and a private containerd
// serving CRI on dir/c.sock with the runc handler and podvm's (one per
// factory mode). runc keeps
// its state under dir/runc (RuncRoot), not in the host-wide
// /run/containerd/runc.
//
// The pod network is a bridge and a /24 of 10.214.0.0/16, wired with CNI's
// bridge and host-local plugins. No portmap, no masquerading: pods reach
// each other and the host, and no iptables rule is added. The bridge's
// name is fixed, so that one left by a killed run is found and replaced by
// the next; it differs from the tests' (podvm-test0) so that a benchmark
// and a test run side by side.
//
// gVisor is not a CRI handler here: under containerd's runc shim (its own
// shim cannot run on these machines) runsc makes a pod's second container
// part of the pause container's sandbox, whose output never reaches the
// shim and whose StopPodSandbox never returns. It is measured through
// `ctr run` instead.
func stackOptions(dir string, t *Tools, podvm []hostbed.Handler, images []hostbed.Image, debug bool) hostbed.StackOptions {
	level := "info"
	if debug {
		level = "debug"
	}
	return hostbed.StackOptions{
		Dir: dir, Images: images,
		Network:    &hostbed.BridgeOptions{Name: "podvm-bench", Bridge: "podvm-bench0", BinDir: t.CNIBinDir, SubnetOctet: 214},
		Containerd: t.Containerd, ShimDir: filepath.Join(t.Prefix, "bin"), LogLevel: level,
		Handlers: append([]hostbed.Handler{hostbed.RuncHandler("runc", t.Runc, RuncRoot(dir))}, podvm...),
	}
}

// podvmStackHandlers are the host's podvm handlers for containerd.
func (h *Host) podvmStackHandlers() []hostbed.Handler {
	var out []hostbed.Handler
	for _, handler := range h.PodvmHandlers() {
		out = append(out, hostbed.PodvmHandler(handler, h.Tools.Shim, h.PodvmConfigs[handler]))
	}
	return out
}

// RuncRoot is where runc (and runsc) keep container state for the bench
// host in dir: `ctr run --runc-root` and the CRI runc handler's Root.
func RuncRoot(dir string) string { return filepath.Join(dir, "runc") }

// containerdGrace is how long containerd may take to stop on SIGTERM.
const containerdGrace = 15 * time.Second
