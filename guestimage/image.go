package guestimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Options configures Build. Zero values select the defaults.
type Options struct {
	CacheDir    string // default DefaultCacheDir()
	AgentBinary string // static podvm-agent; becomes /init
	RuncBinary  string // static runc; becomes /usr/bin/runc
	// CrunBinary, when set, becomes /usr/bin/crun, with its dynamic loader
	// and shared libraries; the config's guest_oci_runtime chooses.
	CrunBinary string
	Progress   io.Writer // one line per step; default io.Discard
	Jobs       int       // make -j; default runtime.NumCPU()

	// KernelSource is the linux-source tarball; default DefaultKernelSource.
	KernelSource string
}

// Image is a built guest image: files in the cache, ready to boot.
type Image struct {
	KernelPath    string // uncompressed PVH-bootable vmlinux
	InitrdPath    string // uncompressed newc cpio
	KernelRelease string // uname -r in the guest, e.g. 6.1.192-podvm
	// RuncFeatures is `runc features` of the guest's runc (JSON, OCI
	// runtime-spec features). The shim reports it to containerd, which
	// decides from it what the runtime can do (e.g. recursive read-only).
	RuncFeatures []byte
}

// Installed file names inside an Install directory.
const (
	InstalledKernel   = "vmlinux"
	InstalledInitrd   = "initramfs.cpio"
	InstalledRelease  = "kernel.release"
	InstalledFeatures = "runc-features.json"
)

// Build returns the guest kernel and initramfs for o, building whatever the
// cache does not already hold. With a warm cache it only hashes its inputs.
func Build(ctx context.Context, o Options) (Image, error) {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.KernelSource == "" {
		o.KernelSource = DefaultKernelSource
	}
	// Check the small inputs first, so a missing binary fails in
	// milliseconds rather than after a five-minute kernel build.
	if o.AgentBinary == "" {
		return Image{}, fmt.Errorf("guest image: no agent binary given; %s", agentFix)
	}
	if o.RuncBinary == "" {
		return Image{}, fmt.Errorf("guest image: no runc binary given; %s", runcFix)
	}
	if err := checkStaticELF(o.AgentBinary, "agent binary", agentFix); err != nil {
		return Image{}, fmt.Errorf("guest image: %w", err)
	}
	if err := checkStaticELF(o.RuncBinary, "runc binary", runcFix); err != nil {
		return Image{}, fmt.Errorf("guest image: %w", err)
	}

	crun, err := crunFiles(ctx, o)
	if err != nil {
		return Image{}, fmt.Errorf("guest image: crun: %w; install Debian's crun package, or build without it", err)
	}

	k, err := buildKernel(ctx, o.CacheDir, o.KernelSource, o.Jobs, o.Progress)
	if err != nil {
		return Image{}, fmt.Errorf("guest image: %w", err)
	}
	initrd, err := buildInitramfs(o.CacheDir, o.AgentBinary, o.RuncBinary, o.Progress, crun...)
	if err != nil {
		return Image{}, fmt.Errorf("guest image: %w", err)
	}
	// The guest's runc is static, so it runs here too and describes itself.
	// Optional: without it containerd assumes the least (no rro, no userns).
	features, err := exec.CommandContext(ctx, o.RuncBinary, "features").Output()
	if err != nil {
		fmt.Fprintf(o.Progress, "runc features: %s cannot describe itself (%v); the shim will report no runtime features\n", o.RuncBinary, err)
		features = nil
	}
	return Image{KernelPath: k.vmlinux(), InitrdPath: initrd, KernelRelease: k.Release, RuncFeatures: features}, nil
}

// crunFiles are crun and the libraries it loads, with the libsystemd stub
// in place of libsystemd when it can stand in (systemdStub); none without
// o.CrunBinary.
func crunFiles(ctx context.Context, o Options) ([]initramfsFile, error) {
	if o.CrunBinary == "" {
		return nil, nil
	}
	stub, why, err := systemdStub(ctx, o.CacheDir, o.CrunBinary)
	if err != nil {
		return nil, err
	}
	substitutes := map[string]string{}
	if stub != "" {
		substitutes[systemdSoname] = stub
	} else {
		fmt.Fprintf(o.Progress, "crun: the guest gets the host's %s and its libraries: %s\n", systemdSoname, why)
	}
	return dynamicBinaryFiles(o.CrunBinary, "usr/bin/crun", hostLibDirs, substitutes)
}

const (
	agentFix = "build it with `CGO_ENABLED=0 go build -o <path> ./cmd/podvm-agent` (static: the guest has no libc)"
	runcFix  = "build a static runc with `ci/install-tools.sh runc` (it writes $PODVM_CACHE/tools/runc-v1.5.2/bin/runc-static)"
)

// Install copies img into dir as vmlinux, initramfs.cpio and kernel.release.
// Each file is replaced atomically by rename; kernel.release is written last,
// so a reader that sees the new release also sees the new kernel and initrd.
func Install(img Image, dir string) error {
	if img.KernelPath == "" || img.InitrdPath == "" || img.KernelRelease == "" {
		return fmt.Errorf("install guest image: incomplete image %+v (use the result of Build)", img)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install guest image: %w", err)
	}
	if err := copyFileAtomic(img.KernelPath, filepath.Join(dir, InstalledKernel), 0o644); err != nil {
		return fmt.Errorf("install guest image: kernel: %w", err)
	}
	if err := copyFileAtomic(img.InitrdPath, filepath.Join(dir, InstalledInitrd), 0o644); err != nil {
		return fmt.Errorf("install guest image: initramfs: %w", err)
	}
	if len(img.RuncFeatures) > 0 {
		if err := writeFileAtomic(filepath.Join(dir, InstalledFeatures), img.RuncFeatures, 0o644); err != nil {
			return fmt.Errorf("install guest image: runc features: %w", err)
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, InstalledRelease), []byte(img.KernelRelease+"\n"), 0o644); err != nil {
		return fmt.Errorf("install guest image: kernel.release: %w", err)
	}
	return nil
}
