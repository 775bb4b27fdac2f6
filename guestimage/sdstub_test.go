package guestimage

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdStubStandsInForCrun builds the stub for the host's crun (the
// one the image takes), checks that crun's files then leave out libsystemd's
// own libraries, and runs crun with the stub in libsystemd's place.
func TestSystemdStubStandsInForCrun(t *testing.T) {
	const crun = "/usr/bin/crun"
	if _, err := os.Stat(crun); err != nil {
		t.Skip("no crun (Debian package crun)")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler")
	}
	cache := t.TempDir()
	stub, why, err := systemdStub(context.Background(), cache, crun)
	if err != nil || stub == "" {
		t.Fatalf("systemdStub = %q, %q, %v", stub, why, err)
	}
	files, err := crunFiles(context.Background(), Options{CacheDir: cache, CrunBinary: crun, Progress: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f.name))
		if filepath.Base(f.name) == systemdSoname && f.src != stub {
			t.Errorf("%s comes from %s, not the stub", f.name, f.src)
		}
	}
	for _, lib := range []string{"libgcrypt.so.20", "liblzma.so.5", "libzstd.so.1"} {
		if strings.Contains(strings.Join(names, " "), lib) {
			t.Errorf("crun's files %q still have %s, which only libsystemd loads", names, lib)
		}
	}
	cmd := exec.Command(crun, "--version")
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+filepath.Dir(stub))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "crun version") {
		t.Errorf("crun --version with the stub: %v: %s", err, out)
	}
	// A second build is the cache's.
	if again, _, err := systemdStub(context.Background(), cache, crun); err != nil || again != stub {
		t.Errorf("second systemdStub = %q, %v; want the cached %q", again, err, stub)
	}
}

// TestSystemdStubRefusesAnotherBinary: a binary that does not link
// libsystemd gets no stub, with the reason.
func TestSystemdStubRefusesAnotherBinary(t *testing.T) {
	bin := "/bin/ls"
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler")
	}
	stub, why, err := systemdStub(context.Background(), t.TempDir(), bin)
	if err != nil || stub != "" || why == "" {
		t.Errorf("systemdStub(%s) = %q, %q, %v; want no stub and a reason", bin, stub, why, err)
	}
}
