package guestimage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDynamicBinaryFilesLoadInAChroot copies what dynamicBinaryFiles lists
// for a dynamic host binary (crun when installed, else ls) into an empty
// root, where nothing else of the host's is (no ld.so.cache), and has the
// dynamic loader resolve it there. (crun itself cannot run in a bare
// chroot: it re-executes itself from a memfd through /proc.)
func TestDynamicBinaryFilesLoadInAChroot(t *testing.T) {
	bin := "/usr/bin/crun"
	if _, err := os.Stat(bin); err != nil {
		bin = "/bin/ls"
	}
	if !isDynamic(bin) {
		t.Skipf("%s is not dynamically linked", bin)
	}
	files, err := dynamicBinaryFiles(bin, "usr/bin/tool", hostLibDirs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.name)
		if f.name != "usr/bin/tool" && !strings.HasPrefix(f.name, guestLibDir+"/") && f.name != "lib64/ld-linux-x86-64.so.2" {
			t.Errorf("%s (from %s) is outside %s", f.name, f.src, guestLibDir)
		}
	}
	if !strings.Contains(strings.Join(names, " "), guestLibDir+"/libc.so.6") {
		t.Errorf("files %q: no libc", names)
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	root := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, os.FileMode(f.perm)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("chroot", root, "/lib64/ld-linux-x86-64.so.2", "--list", "/usr/bin/tool").CombinedOutput()
	if err != nil || strings.Contains(string(out), "not found") {
		t.Fatalf("%s in a root of %q: %v: %s", bin, names, err, out)
	}
}

func TestDynamicBinaryFilesStatic(t *testing.T) {
	const bb = "/bin/busybox"
	if _, err := os.Stat(bb); err != nil || isDynamic(bb) {
		t.Skip("no static /bin/busybox (Debian package busybox-static)")
	}
	files, err := dynamicBinaryFiles(bb, "usr/bin/busybox", hostLibDirs, nil)
	if err != nil || len(files) != 1 {
		t.Fatalf("files %+v, err %v: want the binary alone", files, err)
	}
}

// TestInitramfsMakesLibraryDirs: the parents of extra files are made.
func TestInitramfsMakesLibraryDirs(t *testing.T) {
	dir := t.TempDir()
	agent := writeTestFile(t, dir, "agent", "AGENT")
	runc := writeTestFile(t, dir, "runc", "RUNC")
	lib := writeTestFile(t, dir, "libc.so.6", "LIBC")
	var buf bytes.Buffer
	extra := initramfsFile{name: guestLibDir + "/libc.so.6", src: lib, perm: 0o644}
	if err := writeInitramfs(&buf, initramfsFiles(agent, runc, extra)); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	for _, e := range parseNewc(t, buf.Bytes()) {
		got[e.Name] = e.Mode
	}
	for name, mode := range map[string]uint32{
		"lib": modeDir | 0o755, guestLibDir: modeDir | 0o755, guestLibDir + "/libc.so.6": modeFile | 0o644, "usr/bin/runc": modeFile | 0o755,
	} {
		if got[name] != mode {
			t.Errorf("%s: mode %#o, want %#o", name, got[name], mode)
		}
	}
}
