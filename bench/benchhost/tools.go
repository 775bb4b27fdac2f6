// Package benchhost gives the benchmarks a host to run on: a private
// containerd with CRI and the runc, podvm (and, when built, runsc) runtime
// handlers, a pod network of its own (a Linux bridge with Debian's CNI
// plugins), a local image registry on 127.0.0.1, a CRI client, pods placed
// in host cgroups as the kubelet places them, and a leak check. It is for
// a program rather than a test: nothing here takes a testing.TB, and nothing it
// creates collides with a test or a cluster running beside it (its own
// bridge, subnet, podvm state directory and cgroup). The setup (registry,
// network, containerd: a hostbed.Stack) comes from internal/hostbed; what
// is here is what the measurements need: pods started through CRI with
// their timings, their host processes and cgroup charge, the host's
// description, and the leak check after a run.
package benchhost

import (
	"fmt"
	"os"
	"path/filepath"
)

// Tools are the programs a bench host runs; paths are absolute.
type Tools struct {
	// Prefix is a podvm install (`podvm install`, or `make install-dev`'s
	// _output).
	Prefix      string
	Shim        string
	PodvmConfig string
	Containerd  string
	Ctr         string
	Runc        string
	// Runsc is gVisor's runsc, empty when it is not installed.
	Runsc     string
	CNIBinDir string
	Busybox   string
	// Testbin is the test images' program (the pause process); empty
	// means it is built with the Go toolchain when the host starts.
	Testbin string
}

// Pinned tool versions, as ci/install-tools.sh builds them.
const (
	ContainerdVersion = "v2.4.2"
	RuncVersion       = "v1.5.2"
	// GVisorVersion is the gvisor.dev/gvisor pseudo-version of runsc.
	GVisorVersion = "v0.0.0-20260905035102-160fafc42237"
)

// FindTools locates everything under prefix and the tool cache (as
// ci/install-tools.sh fills it), saying what to run for what is missing.
// runsc may be "" (gVisor from the cache if it is there), "none", or a path.
func FindTools(prefix, cache, runsc, testbin string) (*Tools, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the benchmarks need root (containerd, mounts, QEMU, cgroups)")
	}
	prefix, err := filepath.Abs(prefix)
	if err != nil {
		return nil, err
	}
	tools := filepath.Join(cache, "tools")
	t := &Tools{
		Prefix:      prefix,
		Shim:        filepath.Join(prefix, "bin", "containerd-shim-podvm-v2"),
		PodvmConfig: filepath.Join(prefix, "share", "podvm", "config.toml"),
		Containerd:  filepath.Join(tools, "containerd-"+ContainerdVersion, "bin", "containerd"),
		Ctr:         filepath.Join(tools, "containerd-"+ContainerdVersion, "bin", "ctr"),
		Runc:        filepath.Join(tools, "runc-"+RuncVersion, "bin", "runc"),
		CNIBinDir:   "/usr/lib/cni",
		Busybox:     "/bin/busybox",
		Testbin:     testbin,
	}
	need := []struct{ path, fix string }{
		{t.Shim, "`make install-dev` (or `podvm install --prefix " + prefix + "`)"},
		{t.PodvmConfig, "`make install-dev`"},
		{t.Containerd, "`ci/install-tools.sh containerd`"},
		{t.Ctr, "`ci/install-tools.sh containerd`"},
		{t.Runc, "`ci/install-tools.sh runc`"},
		{filepath.Join(t.CNIBinDir, "bridge"), "Debian package containernetworking-plugins"},
		{filepath.Join(t.CNIBinDir, "host-local"), "Debian package containernetworking-plugins"},
		{filepath.Join(t.CNIBinDir, "loopback"), "Debian package containernetworking-plugins"},
		{t.Busybox, "Debian package busybox-static"},
	}
	if testbin != "" {
		need = append(need, struct{ path, fix string }{testbin, "`make spec-binary` builds _output/bin/podvm-testbin"})
	}
	switch runsc {
	case "none":
	case "":
		p := filepath.Join(tools, "gvisor-"+GVisorVersion, "bin", "runsc")
		if _, err := os.Stat(p); err == nil {
			t.Runsc = p
		}
	default:
		t.Runsc = runsc
		need = append(need, struct{ path, fix string }{runsc, "`ci/install-tools.sh gvisor`"})
	}
	for _, n := range need {
		if _, err := os.Stat(n.path); err != nil {
			return nil, fmt.Errorf("%s is missing: %s provides it", n.path, n.fix)
		}
	}
	for i, p := range []*string{&t.Testbin, &t.Runsc} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, fmt.Errorf("tool %d: %w", i, err)
			}
			*p = abs
		}
	}
	return t, nil
}
