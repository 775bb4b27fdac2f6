package guestimage

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podvm/podvm/internal/estimate"
)

//go:embed kernel.fragment
var kernelFragment []byte

// kernelPatches are applied, in name order, to the freshly extracted source.
// Each one carries its reason and measurement in its header.
//
//go:embed patches/*.patch
var kernelPatches embed.FS

type kernelPatch struct {
	name string
	data []byte
}

func loadKernelPatches() ([]kernelPatch, error) {
	names, err := fs.Glob(kernelPatches, "patches/*.patch")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []kernelPatch
	for _, n := range names {
		data, err := kernelPatches.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, kernelPatch{name: path.Base(n), data: data})
	}
	return out, nil
}

const (
	// DefaultKernelSource is the tarball Debian's linux-source-6.1 installs.
	DefaultKernelSource = "/usr/src/linux-source-6.1.tar.xz"
	kernelSourcePackage = "linux-source-6.1"

	// kernelBuilderVersion is part of the cache key: bump it whenever the
	// build steps change what ends up in the output directory.
	kernelBuilderVersion = "podvm-kernel-1"
)

// kernelEnv is set for every make run and is part of the cache key. The
// KBUILD_BUILD_* values make the version banner, and so vmlinux,
// independent of when and where it was built. An empty but set LOCALVERSION
// stops scripts/setlocalversion from appending "+"; the "-podvm" suffix comes
// from CONFIG_LOCALVERSION in the fragment.
var kernelEnv = []string{
	"ARCH=x86_64",
	"LOCALVERSION=",
	"KBUILD_BUILD_TIMESTAMP=Thu Jan  1 00:00:00 UTC 1970",
	"KBUILD_BUILD_USER=podvm",
	"KBUILD_BUILD_HOST=podvm",
	"KBUILD_BUILD_VERSION=1",
}

// kernelEnvDrop are variables that would change the build behind the cache
// key's back (or, like MAKEFLAGS from an outer make, its parallelism).
var kernelEnvDrop = []string{
	"ARCH", "CROSS_COMPILE", "CC", "LD", "LLVM", "KCFLAGS", "KCPPFLAGS", "KBUILD_OUTPUT",
	"KCONFIG_CONFIG", "O", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "GNUMAKEFLAGS",
}

// kernelTools are the host programs the build runs, with their Debian package.
var kernelTools = []struct{ bin, pkg string }{
	{"make", "make"}, {"gcc", "gcc"}, {"ld", "binutils"}, {"objcopy", "binutils"},
	{"bison", "bison"}, {"flex", "flex"}, {"bc", "bc"}, {"tar", "tar"}, {"xz", "xz-utils"}, {"patch", "patch"},
}

// kernelSource identifies the kernel source for the cache key: the tarball
// and the patches applied to it.
type kernelSource struct {
	Tarball string
	Package string // Debian package version, "" when dpkg does not know the file
	Size    int64
	ModTime time.Time
	Patches []kernelPatch
}

func probeKernelSource(tarball string) (kernelSource, error) {
	st, err := os.Stat(tarball)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return kernelSource{}, fmt.Errorf("kernel source %s not found: install Debian package %s (ci/install-packages.sh does)", tarball, kernelSourcePackage)
		}
		return kernelSource{}, fmt.Errorf("kernel source: %w", err)
	}
	patches, err := loadKernelPatches()
	if err != nil {
		return kernelSource{}, fmt.Errorf("kernel patches: %w", err)
	}
	src := kernelSource{Tarball: tarball, Size: st.Size(), ModTime: st.ModTime().UTC(), Patches: patches}
	if tarball == DefaultKernelSource {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", kernelSourcePackage).Output()
		if err == nil {
			src.Package = kernelSourcePackage + " " + strings.TrimSpace(string(out))
		}
	}
	return src, nil
}

// describe is the human-readable name of the source, for progress lines.
func (s kernelSource) describe() string {
	if s.Package != "" {
		return s.Package
	}
	return filepath.Base(s.Tarball)
}

// treeKey names the extracted, patched source tree. The fragment is not in
// it, so builds with different fragments share one tree and rebuild
// incrementally.
func (s kernelSource) treeKey() string {
	h := sha256.New()
	writeField(h, "package", []byte(s.Package))
	writeField(h, "size", []byte(strconv.FormatInt(s.Size, 10)))
	writeField(h, "mtime", []byte(s.ModTime.Format(time.RFC3339Nano)))
	for _, p := range s.Patches {
		writeField(h, "patch "+p.name, p.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// kernelKey is the content address of a kernel build. Jobs is not in it:
// parallelism does not change the output.
func kernelKey(fragment []byte, src kernelSource, compiler string) string {
	h := sha256.New()
	writeField(h, "builder", []byte(kernelBuilderVersion))
	writeField(h, "fragment", fragment)
	writeField(h, "source", []byte(src.treeKey()))
	writeField(h, "compiler", []byte(compiler))
	writeField(h, "env", []byte(strings.Join(kernelEnv, "\n")))
	return hex.EncodeToString(h.Sum(nil))
}

// compilerVersion is the first line of `gcc --version`: a different compiler
// makes a different vmlinux.
func compilerVersion() (string, error) {
	out, err := exec.Command("gcc", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("run gcc --version: %w; install Debian package build-essential (ci/install-packages.sh does)", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line, nil
}

func checkKernelTools() error {
	var missing []string
	for _, t := range kernelTools {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.bin, t.pkg))
		}
	}
	// objtool, which every x86-64 build runs, links against libelf.
	if _, err := os.Stat("/usr/include/libelf.h"); err != nil {
		missing = append(missing, "libelf headers (Debian package libelf-dev)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel build needs %s: install them (ci/install-packages.sh does)", strings.Join(missing, ", "))
	}
	return nil
}

// kernelResult is a finished build in the cache.
type kernelResult struct {
	Dir     string // holds vmlinux, kernel.release, config
	Release string
}

func (r kernelResult) vmlinux() string { return filepath.Join(r.Dir, "vmlinux") }

// readKernelResult returns the build in dir if it is complete. Directories
// appear by rename only, so an existing one is complete; the file check
// guards against a hand-edited cache.
func readKernelResult(dir string) (kernelResult, bool) {
	rel, err := os.ReadFile(filepath.Join(dir, "kernel.release"))
	if err != nil {
		return kernelResult{}, false
	}
	if st, err := os.Stat(filepath.Join(dir, "vmlinux")); err != nil || !st.Mode().IsRegular() {
		return kernelResult{}, false
	}
	return kernelResult{Dir: dir, Release: strings.TrimSpace(string(rel))}, true
}

// kernelBuild is one run of the kernel builder.
type kernelBuild struct {
	root     string // $CACHE/guestimage
	src      kernelSource
	fragment []byte
	key      string
	jobs     int
	progress io.Writer
	logPath  string
	log      *os.File
}

// buildKernel returns the cached kernel for the current inputs, building it
// first if needed.
func buildKernel(ctx context.Context, cacheDir, tarball string, jobs int, progress io.Writer) (kernelResult, error) {
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	src, err := probeKernelSource(tarball)
	if err != nil {
		return kernelResult{}, err
	}
	cc, err := compilerVersion()
	if err != nil {
		return kernelResult{}, err
	}
	b := &kernelBuild{
		root:     filepath.Join(cacheDir, "guestimage"),
		src:      src,
		fragment: kernelFragment,
		key:      kernelKey(kernelFragment, src, cc),
		jobs:     jobs,
		progress: progress,
	}
	out := filepath.Join(b.root, "kernel-"+b.key[:12])
	if r, ok := readKernelResult(out); ok {
		fmt.Fprintf(progress, "kernel: cached %s (%s)\n", r.vmlinux(), r.Release)
		return r, nil
	}
	if err := checkKernelTools(); err != nil {
		return kernelResult{}, err
	}
	for _, d := range []string{b.root, filepath.Join(b.root, "src"), filepath.Join(b.root, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return kernelResult{}, fmt.Errorf("kernel: create cache dir: %w", err)
		}
	}
	tree := filepath.Join(b.root, "src", "linux-"+src.treeKey())
	unlock, err := lockFile(tree+".lock", func() {
		fmt.Fprintf(progress, "kernel: waiting for another build using %s\n", tree)
	})
	if err != nil {
		return kernelResult{}, fmt.Errorf("kernel: %w", err)
	}
	defer unlock()
	// Another process may have finished the same build while we waited.
	if r, ok := readKernelResult(out); ok {
		fmt.Fprintf(progress, "kernel: cached %s (%s)\n", r.vmlinux(), r.Release)
		return r, nil
	}
	b.logPath = filepath.Join(b.root, "logs", "kernel-"+b.key[:12]+".log")
	if b.log, err = os.Create(b.logPath); err != nil {
		return kernelResult{}, fmt.Errorf("kernel: %w", err)
	}
	defer b.log.Close()

	start := time.Now()
	if err := b.extract(ctx, tree); err != nil {
		return kernelResult{}, err
	}
	if err := b.configure(ctx, tree); err != nil {
		return kernelResult{}, err
	}
	if err := b.compile(ctx, tree); err != nil {
		return kernelResult{}, err
	}
	r, err := b.publish(ctx, tree, out)
	if err != nil {
		return kernelResult{}, err
	}
	st, _ := os.Stat(r.vmlinux())
	fmt.Fprintf(progress, "kernel: done: %s, vmlinux %s, in %s\n", r.Release, humanSize(st.Size()), time.Since(start).Round(time.Second))
	return r, nil
}

// extract unpacks the tarball into tree unless a previous build already did.
// It unpacks beside tree and renames, so a half-extracted tree never exists
// under the final name.
func (b *kernelBuild) extract(ctx context.Context, tree string) error {
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err == nil {
		fmt.Fprintf(b.progress, "kernel: reusing source tree %s\n", tree)
		return nil
	}
	fmt.Fprintf(b.progress, "kernel: extracting %s (%s), applying %d patch(es)\n", b.src.Tarball, b.src.describe(), len(b.src.Patches))
	tmp := tree + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := b.run(ctx, "", "tar", "-xf", b.src.Tarball, "-C", tmp, "--strip-components=1"); err != nil {
		return fmt.Errorf("kernel: extract %s: %w", b.src.Tarball, err)
	}
	// The patches stay in the tree, so it shows what was applied to it.
	pdir := filepath.Join(tmp, "podvm-patches")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	for _, p := range b.src.Patches {
		file := filepath.Join(pdir, p.name)
		if err := os.WriteFile(file, p.data, 0o644); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		if err := b.run(ctx, tmp, "patch", "-p1", "--forward", "--batch", "-i", file); err != nil {
			return fmt.Errorf("kernel: patch %s does not apply to %s; update guestimage/patches for this kernel version: %w", p.name, b.src.describe(), err)
		}
	}
	if err := os.Rename(tmp, tree); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	return nil
}

// configure makes .config from tinyconfig plus the fragment and checks that
// Kconfig kept every option the fragment asks for.
func (b *kernelBuild) configure(ctx context.Context, tree string) error {
	want, err := parseKconfig(b.fragment)
	if err != nil {
		return fmt.Errorf("kernel: guestimage/kernel.fragment: %w", err)
	}
	fmt.Fprintf(b.progress, "kernel: configuring (tinyconfig + kernel.fragment, %d options)\n", len(want))
	frag := filepath.Join(tree, "podvm.fragment")
	if err := os.WriteFile(frag, b.fragment, 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	steps := [][]string{
		{"make", "tinyconfig"},
		{"scripts/kconfig/merge_config.sh", "-m", ".config", frag},
		{"make", "olddefconfig"},
	}
	for _, s := range steps {
		if err := b.run(ctx, tree, s[0], s[1:]...); err != nil {
			return fmt.Errorf("kernel: configure: %w", err)
		}
	}
	text, err := os.ReadFile(filepath.Join(tree, ".config"))
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	final, err := parseKconfig(text)
	if err != nil {
		return fmt.Errorf("kernel: parse .config: %w", err)
	}
	if bad := verifyConfig(want, final); len(bad) > 0 {
		cerr := &configError{Fragment: "guestimage/kernel.fragment", Config: filepath.Join(tree, ".config"), Mismatches: bad}
		if err := cerr.explain(tree); err != nil {
			fmt.Fprintf(b.log, "podvm: could not look up Kconfig dependencies: %v\n", err)
		}
		return cerr
	}
	return nil
}

// compile runs make vmlinux, printing the elapsed time (estimate.Ticker).
func (b *kernelBuild) compile(ctx context.Context, tree string) error {
	fmt.Fprintf(b.progress, "kernel: compiling vmlinux with make -j%d (%s; log: %s)\n", b.jobs, estimate.KernelBuild.About(), b.logPath)
	stop := estimate.Ticker(b.progress, "kernel: compiling", estimate.KernelBuild)
	defer stop()
	if err := b.run(ctx, tree, "make", "-j"+strconv.Itoa(b.jobs), "vmlinux"); err != nil {
		return fmt.Errorf("kernel: compile: %w", err)
	}
	return nil
}

// publish copies the results into a temporary directory and renames it to
// out, the directory's only way into the cache.
func (b *kernelBuild) publish(ctx context.Context, tree, out string) (kernelResult, error) {
	tmp, err := os.MkdirTemp(b.root, ".kernel-"+b.key[:12]+".tmp-")
	if err != nil {
		return kernelResult{}, fmt.Errorf("kernel: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	// tinyconfig has no DEBUG_INFO, so --strip-debug changes nothing; the
	// symbol table is 8% of the file and never loaded into the guest.
	// Stripping it did not change boot time; it saves disk and copying.
	if err := b.run(ctx, tree, "objcopy", "--strip-all", "vmlinux", filepath.Join(tmp, "vmlinux")); err != nil {
		return kernelResult{}, fmt.Errorf("kernel: strip vmlinux: %w", err)
	}
	rel, err := b.output(ctx, tree, "make", "-s", "kernelrelease")
	if err != nil {
		return kernelResult{}, fmt.Errorf("kernel: make kernelrelease: %w", err)
	}
	rel = strings.TrimSpace(rel)
	if err := os.WriteFile(filepath.Join(tmp, "kernel.release"), []byte(rel+"\n"), 0o644); err != nil {
		return kernelResult{}, fmt.Errorf("kernel: %w", err)
	}
	if err := copyFileAtomic(filepath.Join(tree, ".config"), filepath.Join(tmp, "config"), 0o644); err != nil {
		return kernelResult{}, fmt.Errorf("kernel: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return kernelResult{}, fmt.Errorf("kernel: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		// Lost a race with an identical build: theirs is as good as ours.
		if r, ok := readKernelResult(out); ok {
			return r, nil
		}
		return kernelResult{}, fmt.Errorf("kernel: publish %s: %w", out, err)
	}
	return kernelResult{Dir: out, Release: rel}, nil
}

// run runs a command with its output appended to the build log. On failure
// the error carries the log's path and tail.
func (b *kernelBuild) run(ctx context.Context, dir, name string, args ...string) error {
	cmd := b.command(ctx, dir, name, args...)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Run(); err != nil {
		return b.failure(ctx, name, args, err)
	}
	return nil
}

// output is run for a command whose stdout is the result.
func (b *kernelBuild) output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := b.command(ctx, dir, name, args...)
	cmd.Stderr = b.log
	out, err := cmd.Output()
	if err != nil {
		return "", b.failure(ctx, name, args, err)
	}
	return string(out), nil
}

func (b *kernelBuild) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	fmt.Fprintf(b.log, "+ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = kernelBuildEnv(os.Environ())
	// make's children must die with it when ctx is cancelled.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

func (b *kernelBuild) failure(ctx context.Context, name string, args []string, err error) error {
	if ctx.Err() != nil { // cancelled: the log's tail would only show the kill
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), ctx.Err())
	}
	return fmt.Errorf("%s %s: %w\nlast lines of %s:\n%s", name, strings.Join(args, " "), err, b.logPath, logTail(b.logPath, 30))
}

// kernelBuildEnv is env without kernelEnvDrop and with kernelEnv.
func kernelBuildEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := k == "LOCALVERSION" || strings.HasPrefix(k, "KBUILD_BUILD_")
		for _, d := range kernelEnvDrop {
			drop = drop || k == d
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return append(out, kernelEnv...)
}

// logTail returns the last n lines of the file at path, indented.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (log unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
