package guestimage

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// systemdSoname is the library the stub stands in for.
const systemdSoname = "libsystemd.so.0"

// The stub's source and its symbol versions (those crun 1.8.1 imports).
var (
	//go:embed sdstub/libsystemd.c
	sdStubSource []byte
	//go:embed sdstub/libsystemd.map
	sdStubVersions []byte
)

// systemdStub returns a libsystemd.so.0 for binary that does nothing, built
// from sdstub/ with the host's C compiler into cacheDir, to stand in for
// Debian's in the guest. Debian's crun links libsystemd, and through it
// libgcrypt, libgpg-error, liblzma, libzstd and liblz4: six of its ten
// libraries, which every crun call maps, relocates and runs the constructors
// of. In a pod VM none of it serves: there is no systemd (crun's cgroupfs
// manager runs), no NOTIFY_SOCKET and no journal. With the stub crun loads
// five libraries, page-faults a third less (304 to 196 minor faults for
// `crun --version` on the host), and under TCG every fault and every
// first-run instruction counts (docs/benchmarks.md).
//
// why is set, and path empty, when the stub cannot stand in: no C compiler,
// or binary imports a libsystemd function (or version) the stub lacks,
// which the loader would refuse at crun's every start (crun binds now).
func systemdStub(ctx context.Context, cacheDir, binary string) (path, why string, err error) {
	want, err := importsFrom(binary, systemdSoname)
	if err != nil {
		return "", "", err
	}
	if len(want) == 0 {
		return "", fmt.Sprintf("%s does not import from %s", binary, systemdSoname), nil
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", "no C compiler (cc) to build the libsystemd stub", nil
	}
	sum := sha256.Sum256(append(append([]byte{}, sdStubSource...), sdStubVersions...))
	dir := filepath.Join(cacheDir, "guestimage", "sdstub-"+hex.EncodeToString(sum[:6]))
	path = filepath.Join(dir, systemdSoname)
	if _, err := os.Stat(path); err != nil {
		if err := buildSystemdStub(ctx, cc, dir, path); err != nil {
			return "", "", err
		}
	}
	have, err := exportsOf(path)
	if err != nil {
		return "", "", err
	}
	var missing []string
	for _, s := range want {
		if !have[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Sprintf("%s imports %s, which the libsystemd stub lacks", binary, strings.Join(missing, ", ")), nil
	}
	return path, "", nil
}

// buildSystemdStub compiles the stub into path, through a temporary file in
// dir, so that a half-written library is never found in the cache.
func buildSystemdStub(ctx context.Context, cc, dir, path string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("libsystemd stub: %w", err)
	}
	src := filepath.Join(dir, "libsystemd.c")
	versions := filepath.Join(dir, "libsystemd.map")
	if err := os.WriteFile(src, sdStubSource, 0o644); err != nil {
		return fmt.Errorf("libsystemd stub: %w", err)
	}
	if err := os.WriteFile(versions, sdStubVersions, 0o644); err != nil {
		return fmt.Errorf("libsystemd stub: %w", err)
	}
	tmp := path + ".tmp"
	cmd := exec.CommandContext(ctx, cc, "-O2", "-shared", "-fPIC", "-Wl,--version-script="+versions,
		"-Wl,-soname,"+systemdSoname, "-o", tmp, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("libsystemd stub: %s: %w: %s", strings.Join(cmd.Args, " "), err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("libsystemd stub: %w", err)
	}
	return nil
}

// importsFrom returns the symbols (name@version) binary imports from soname.
func importsFrom(binary, soname string) ([]string, error) {
	return versionedSymbols(binary, func(s elf.Symbol) bool { return s.Section == elf.SHN_UNDEF && s.Library == soname })
}

// exportsOf returns the defined dynamic symbols (name@version) of lib.
func exportsOf(lib string) (map[string]bool, error) {
	syms, err := versionedSymbols(lib, func(s elf.Symbol) bool { return s.Section != elf.SHN_UNDEF })
	out := map[string]bool{}
	for _, s := range syms {
		out[s] = true
	}
	return out, err
}

// versionedSymbols returns the dynamic symbols of the ELF file at path that
// keep accepts, as name@version, sorted.
func versionedSymbols(path string, keep func(elf.Symbol) bool) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("dynamic symbols of %s: %w", path, err)
	}
	var out []string
	for _, s := range syms {
		if keep(s) {
			out = append(out, s.Name+"@"+s.Version)
		}
	}
	sort.Strings(out)
	return out, nil
}
