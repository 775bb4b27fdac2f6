package guestimage

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKernelKey(t *testing.T) {
	base := kernelSource{Tarball: "/x.tar.xz", Package: "linux-source-6.1 6.1.192-2", Size: 100, ModTime: time.Unix(5, 0)}
	frag := []byte("CONFIG_A=y\n")
	const cc = "gcc (Debian 12.2.0-14) 12.2.0"
	k := kernelKey(frag, base, cc)
	if len(k) != 64 {
		t.Fatalf("key %q is not a hex sha256", k)
	}
	if kernelKey(slices.Clone(frag), base, cc) != k {
		t.Fatal("key is not deterministic")
	}
	moved := base
	moved.Tarball = "/elsewhere/x.tar.xz" // the path is not content
	if kernelKey(frag, moved, cc) != k {
		t.Error("moving the tarball changed the key")
	}
	changes := []struct {
		name string
		key  string
	}{
		{"fragment option added", kernelKey([]byte("CONFIG_A=y\nCONFIG_B=y\n"), base, cc)},
		{"fragment comment changed", kernelKey([]byte("# why\nCONFIG_A=y\n"), base, cc)},
		{"package version", kernelKey(frag, with(base, func(s *kernelSource) { s.Package = "linux-source-6.1 6.1.193-1" }), cc)},
		{"tarball size", kernelKey(frag, with(base, func(s *kernelSource) { s.Size++ }), cc)},
		{"tarball mtime", kernelKey(frag, with(base, func(s *kernelSource) { s.ModTime = s.ModTime.Add(time.Second) }), cc)},
		{"compiler", kernelKey(frag, base, "gcc (Debian 13.1.0) 13.1.0")},
		{"patch added", kernelKey(frag, with(base, func(s *kernelSource) {
			s.Patches = []kernelPatch{{name: "0001-x.patch", data: []byte("--- a/x\n")}}
		}), cc)},
	}
	for _, c := range changes {
		if c.key == k {
			t.Errorf("%s did not change the key", c.name)
		}
	}
}

func with(s kernelSource, f func(*kernelSource)) kernelSource { f(&s); return s }

func TestKernelBuildEnv(t *testing.T) {
	env := kernelBuildEnv([]string{
		"PATH=/usr/bin", "HOME=/root", "ARCH=arm64", "MAKEFLAGS=-j8 --jobserver-auth=3,4",
		"LOCALVERSION=-mine", "KBUILD_BUILD_USER=me", "CROSS_COMPILE=aarch64-linux-gnu-",
	})
	for _, kv := range []string{"PATH=/usr/bin", "HOME=/root", "ARCH=x86_64", "LOCALVERSION=", "KBUILD_BUILD_USER=podvm"} {
		if !slices.Contains(env, kv) {
			t.Errorf("env lacks %q: %q", kv, env)
		}
	}
	for _, kv := range []string{"ARCH=arm64", "LOCALVERSION=-mine", "KBUILD_BUILD_USER=me"} {
		if slices.Contains(env, kv) {
			t.Errorf("env keeps %q", kv)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "CROSS_COMPILE=") {
			t.Errorf("env keeps %q", kv)
		}
	}
}

func TestProbeKernelSourceMissing(t *testing.T) {
	_, err := probeKernelSource(filepath.Join(t.TempDir(), "linux-source-6.1.tar.xz"))
	if err == nil || !strings.Contains(err.Error(), "install Debian package linux-source-6.1 (ci/install-packages.sh does)") {
		t.Fatalf("err = %v, want it to name the package and the script", err)
	}
}

// TestBuildCacheHit fills the cache with a fake kernel under the key Build
// will compute and checks that Build returns it at once, without make.
func TestBuildCacheHit(t *testing.T) {
	cc, err := compilerVersion()
	if err != nil {
		t.Skipf("no gcc, so no kernel key can be computed: %v", err)
	}
	dir := t.TempDir()
	tarball := writeTestFile(t, dir, "linux.tar.xz", "not really a tarball")
	src, err := probeKernelSource(tarball)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	kdir := filepath.Join(cache, "guestimage", "kernel-"+kernelKey(kernelFragment, src, cc)[:12])
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, kdir, "vmlinux", "ELF")
	writeTestFile(t, kdir, "kernel.release", "6.1.192-podvm\n")

	static := staticTestBinary(t)
	var progress bytes.Buffer
	start := time.Now()
	img, err := Build(context.Background(), Options{
		CacheDir: cache, AgentBinary: static, RuncBinary: static, Progress: &progress, KernelSource: tarball,
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("cached Build took %v", took)
	if took > 2*time.Second {
		t.Errorf("cached Build took %v", took)
	}
	if img.KernelPath != filepath.Join(kdir, "vmlinux") || img.KernelRelease != "6.1.192-podvm" {
		t.Errorf("image %+v, want the cached kernel", img)
	}
	if !strings.Contains(progress.String(), "kernel: cached") {
		t.Errorf("progress does not report the cache hit:\n%s", progress.String())
	}

	// Install copies all three files.
	inst := filepath.Join(dir, "installed")
	if err := Install(img, inst); err != nil {
		t.Fatal(err)
	}
	for name, from := range map[string]string{InstalledKernel: img.KernelPath, InstalledInitrd: img.InitrdPath} {
		a, _ := os.ReadFile(from)
		b, err := os.ReadFile(filepath.Join(inst, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: not a copy of %s (%v)", name, from, err)
		}
	}
	if rel, _ := os.ReadFile(filepath.Join(inst, InstalledRelease)); string(rel) != "6.1.192-podvm\n" {
		t.Errorf("kernel.release = %q", rel)
	}
}

func TestBuildInputErrors(t *testing.T) {
	dir := t.TempDir()
	static := staticTestBinary(t)
	script := writeTestFile(t, dir, "agent.sh", "#!/bin/sh\n")
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no agent", Options{RuncBinary: static}, "go build -o <path> ./cmd/podvm-agent"},
		{"agent missing", Options{AgentBinary: filepath.Join(dir, "podvm-agent"), RuncBinary: static}, "does not exist; build it with `CGO_ENABLED=0 go build"},
		{"agent not ELF", Options{AgentBinary: script, RuncBinary: static}, "not an ELF executable"},
		{"runc missing", Options{AgentBinary: static, RuncBinary: filepath.Join(dir, "runc")}, "ci/install-tools.sh runc"},
		{"no source", Options{AgentBinary: static, RuncBinary: static, KernelSource: filepath.Join(dir, "linux.tar.xz")}, "install Debian package linux-source-6.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.CacheDir = filepath.Join(dir, "cache")
			_, err := Build(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestInstallRejectsEmptyImage(t *testing.T) {
	if err := Install(Image{}, t.TempDir()); err == nil {
		t.Fatal("Install of an empty Image succeeded")
	}
}

// staticTestBinary is a static x86-64 executable for tests that need one.
func staticTestBinary(t *testing.T) string {
	t.Helper()
	const bb = "/bin/busybox"
	if err := checkStaticELF(bb, "busybox", ""); err != nil {
		t.Skipf("needs a static /bin/busybox (Debian package busybox-static): %v", err)
	}
	return bb
}

// integration skips unless PODVM_TEST_KERNEL_BUILD=1.
func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("PODVM_TEST_KERNEL_BUILD") != "1" {
		t.Skip("builds the real guest kernel (about 5 min on 2 cores, or a cache hit): set PODVM_TEST_KERNEL_BUILD=1; the Makefile builds the image anyway")
	}
}

// TestBuildKernelIntegration builds (or finds in $PODVM_CACHE) the real kernel
// and checks the output: a PVH-bootable ELF, a -podvm release, the config.
func TestBuildKernelIntegration(t *testing.T) {
	integration(t)
	r, err := buildKernel(context.Background(), DefaultCacheDir(), DefaultKernelSource, 0, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^6\.1\.\d+-podvm$`).MatchString(r.Release) {
		t.Errorf("kernel release %q, want 6.1.<n>-podvm", r.Release)
	}
	if !hasPVHNote(t, r.vmlinux()) {
		t.Errorf("%s has no Xen PVH entry note: QEMU cannot boot it directly", r.vmlinux())
	}
	cfg, err := os.ReadFile(filepath.Join(r.Dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	final, err := parseKconfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := parseKconfig(kernelFragment)
	if bad := verifyConfig(want, final); len(bad) > 0 {
		t.Error((&configError{Fragment: "kernel.fragment", Mismatches: bad}).Error())
	}

	// A second build with the same inputs is a cache hit.
	start := time.Now()
	if _, err := buildKernel(context.Background(), DefaultCacheDir(), DefaultKernelSource, 0, testWriter{t}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cached kernel build took %v", took)
	}
}

// hasPVHNote reports whether the ELF has XEN_ELFNOTE_PHYS32_ENTRY (type 18,
// owner "Xen"), the entry point QEMU and Cloud Hypervisor use for PVH boot.
func hasPVHNote(t *testing.T, path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		for len(data) >= 12 {
			namesz := binary.LittleEndian.Uint32(data[0:])
			descsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			name := data[12 : 12+namesz]
			if typ == 18 && string(bytes.TrimRight(name, "\x00")) == "Xen" {
				return true
			}
			next := 12 + (namesz+3)&^3 + (descsz+3)&^3
			if int(next) > len(data) {
				break
			}
			data = data[next:]
		}
	}
	return false
}

// TestBootKernelIntegration boots the built kernel under QEMU TCG with a
// busybox /init and checks that it reaches userspace with our release.
func TestBootKernelIntegration(t *testing.T) {
	integration(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not on PATH (Debian package qemu-system-x86)")
	}
	busybox := staticTestBinary(t)
	r, err := buildKernel(context.Background(), DefaultCacheDir(), DefaultKernelSource, 0, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), "boot-test.cpio")
	writeBootTestInitramfs(t, initrd, busybox)

	cmdline := "console=ttyS0 reboot=t panic=-1 quiet tsc=reliable no_timer_check"
	if khz := hostTSCkHz(); khz != "" {
		cmdline += " tsc_early_khz=" + khz
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-M", "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=on,rtc=on",
		"-accel", "tcg,tb-size=64", "-cpu", "max", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", r.vmlinux(), "-initrd", initrd, "-append", cmdline)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("QEMU ran %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("qemu: %v", err)
	}
	if !strings.Contains(string(out), "podvm-boot-test: "+r.Release+" ") {
		t.Errorf("guest did not print its release %s", r.Release)
	}
}

// writeBootTestInitramfs writes an archive whose /init is a busybox script
// that prints uname -r and the uptime, then powers off.
func writeBootTestInitramfs(t *testing.T, path, busybox string) {
	script := "#!/bin/busybox sh\n" +
		"/bin/busybox mount -t proc proc /proc\n" +
		"echo \"podvm-boot-test: $(/bin/busybox uname -r) up $(/bin/busybox cut -d' ' -f1 /proc/uptime)\"\n" +
		"/bin/busybox poweroff -f\n"
	bb, err := os.Open(busybox)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	st, _ := bb.Stat()
	var buf bytes.Buffer
	cw := newCpioWriter(&buf)
	for _, e := range []cpioEntry{
		{Name: "bin", Mode: modeDir | 0o755},
		{Name: "bin/busybox", Mode: modeFile | 0o755, Size: st.Size(), Body: bb},
		{Name: "dev", Mode: modeDir | 0o755},
		{Name: "dev/console", Mode: modeChar | 0o600, RdevMajor: 5, RdevMinor: 1},
		{Name: "init", Mode: modeFile | 0o755, Size: int64(len(script)), Body: strings.NewReader(script)},
		{Name: "proc", Mode: modeDir | 0o555},
	} {
		if err := cw.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hostTSCkHz is PODVM_TSC_KHZ, or the "cpu MHz" of /proc/cpuinfo in kHz; the
// guest needs it under TCG or it may hang calibrating the TSC.
func hostTSCkHz() string {
	if v := os.Getenv("PODVM_TSC_KHZ"); v != "" {
		return v
	}
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	m := regexp.MustCompile(`(?m)^cpu MHz\s*:\s*(\d+)\.(\d{3})`).FindSubmatch(data)
	if m == nil {
		return ""
	}
	return strings.TrimLeft(string(m[1])+string(m[2]), "0")
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestKernelPatchesEmbedded(t *testing.T) {
	patches, err := loadKernelPatches()
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) == 0 {
		t.Fatal("no patches embedded from guestimage/patches")
	}
	for _, p := range patches {
		if !bytes.Contains(p.data, []byte("\n--- a/")) || !bytes.Contains(p.data, []byte("\n+++ b/")) {
			t.Errorf("%s is not a -p1 unified diff", p.name)
		}
	}
}
