package guestimage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestInitramfsLayout(t *testing.T) {
	dir := t.TempDir()
	agent := writeTestFile(t, dir, "agent", "AGENT")
	runc := writeTestFile(t, dir, "runc", "RUNC")
	var buf bytes.Buffer
	if err := writeInitramfs(&buf, initramfsFiles(agent, runc)); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name      string
		mode      uint32
		data      string
		rmaj, rmn uint32
	}{
		{"dev", modeDir | 0o755, "", 0, 0},
		{"dev/console", modeChar | 0o600, "", 5, 1},
		{"etc", modeDir | 0o755, "", 0, 0},
		{"init", modeFile | 0o755, "AGENT", 0, 0},
		{"proc", modeDir | 0o555, "", 0, 0},
		{"run", modeDir | 0o755, "", 0, 0},
		{"sys", modeDir | 0o555, "", 0, 0},
		{"tmp", modeDir | 0o1777, "", 0, 0},
		{"usr", modeDir | 0o755, "", 0, 0},
		{"usr/bin", modeDir | 0o755, "", 0, 0},
		{"usr/bin/runc", modeFile | 0o755, "RUNC", 0, 0},
	}
	got := parseNewc(t, buf.Bytes())
	if len(got) != len(want) {
		var names []string
		for _, g := range got {
			names = append(names, g.Name)
		}
		t.Fatalf("entries %q, want %d entries", names, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.Mode != w.mode || string(g.Data) != w.data || g.RdevMajor != w.rmaj || g.RdevMinor != w.rmn {
			t.Errorf("entry %d: %s mode %#o data %q rdev %d,%d; want %s mode %#o data %q rdev %d,%d",
				i, g.Name, g.Mode, g.Data, g.RdevMajor, g.RdevMinor, w.name, w.mode, w.data, w.rmaj, w.rmn)
		}
		if g.Ino != uint32(i+1) || g.Mtime != 0 || g.UID != 0 || g.GID != 0 {
			t.Errorf("%s: ino %d mtime %d uid %d gid %d; want ino %d and zeros", g.Name, g.Ino, g.Mtime, g.UID, g.GID, i+1)
		}
	}
}

// TestInitramfsReproducible builds the archive from copies of the same inputs
// at different paths with different timestamps: the bytes and the cache key
// must not change. Changing one input's content must change the key.
func TestInitramfsReproducible(t *testing.T) {
	inputs := func(dir string, mtime time.Time, runcContent string) (string, string) {
		a := writeTestFile(t, dir, "podvm-agent", "agent v1")
		r := writeTestFile(t, dir, "runc-static", runcContent)
		for _, p := range []string{a, r} {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		return a, r
	}
	a1, r1 := inputs(t.TempDir(), time.Unix(1000, 0), "runc v1")
	a2, r2 := inputs(t.TempDir(), time.Unix(2_000_000_000, 0), "runc v1")
	a3, r3 := inputs(t.TempDir(), time.Unix(1000, 0), "runc v2")

	cache1, cache2 := t.TempDir(), t.TempDir()
	p1, err := buildInitramfs(cache1, a1, r1, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := buildInitramfs(cache2, a2, r2, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		t.Error("same inputs gave different archives")
	}
	if filepath.Base(p1) != filepath.Base(p2) {
		t.Errorf("same inputs gave different names %s and %s", filepath.Base(p1), filepath.Base(p2))
	}
	if !strings.HasPrefix(p1, filepath.Join(cache1, "guestimage", "initramfs-")) || !strings.HasSuffix(p1, ".cpio") {
		t.Errorf("archive at %s, want %s/guestimage/initramfs-<key>.cpio", p1, cache1)
	}

	k1, err := initramfsKey(initramfsFiles(a1, r1))
	if err != nil {
		t.Fatal(err)
	}
	k3, err := initramfsKey(initramfsFiles(a3, r3))
	if err != nil {
		t.Fatal(err)
	}
	if k1 == k3 {
		t.Error("changing runc's content did not change the key")
	}
	if k1s, _ := initramfsKey(initramfsFiles(r1, a1)); k1s == k1 {
		t.Error("swapping agent and runc did not change the key")
	}
}

func TestInitramfsCacheHit(t *testing.T) {
	dir := t.TempDir()
	agent := writeTestFile(t, dir, "agent", "A")
	runc := writeTestFile(t, dir, "runc", "R")
	cache := t.TempDir()
	var progress bytes.Buffer
	p1, err := buildInitramfs(cache, agent, runc, &progress)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(p1)
	p2, err := buildInitramfs(cache, agent, runc, &progress)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(p2)
	if p1 != p2 || !os.SameFile(st1, st2) {
		t.Errorf("second build rewrote the archive (%s, %s)", p1, p2)
	}
	if !strings.Contains(progress.String(), "initramfs: cached") {
		t.Errorf("progress does not report the cache hit:\n%s", progress.String())
	}
	// No temporary files are left behind.
	left, _ := filepath.Glob(filepath.Join(cache, "guestimage", ".*"))
	if len(left) > 0 {
		t.Errorf("leftover temporary files: %q", left)
	}
}

func TestCheckStaticELF(t *testing.T) {
	dir := t.TempDir()
	notELF := writeTestFile(t, dir, "script", "#!/bin/sh\n")
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "does not exist; FIX"},
		{"not ELF", notELF, "is not an ELF executable"},
	}
	// A dynamically linked system binary, when the host has one.
	for _, p := range []string{"/bin/ls", "/usr/bin/env"} {
		if isDynamic(p) {
			tests = append(tests, struct{ name, path, want string }{"dynamic", p, "dynamically linked (interpreter /lib"})
			break
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkStaticELF(tt.path, "thing", "FIX")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasSuffix(err.Error(), "FIX") {
				t.Fatalf("err = %v, want it to contain %q and end with the fix", err, tt.want)
			}
		})
	}
	t.Run("static", func(t *testing.T) {
		const bb = "/bin/busybox" // Debian's busybox-static
		if _, err := os.Stat(bb); err != nil || isDynamic(bb) {
			t.Skip("no static /bin/busybox (Debian package busybox-static)")
		}
		if err := checkStaticELF(bb, "busybox", "FIX"); err != nil {
			t.Fatal(err)
		}
	})
}

func isDynamic(path string) bool {
	err := checkStaticELF(path, "x", "")
	return err != nil && strings.Contains(err.Error(), "dynamically linked")
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestPruneInitramfs(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	var paths []string
	for i := range 5 {
		p := filepath.Join(dir, fmt.Sprintf("initramfs-%012d.cpio", i))
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Archive i was last used i minutes after base: 4 is the newest.
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	other := filepath.Join(dir, "kernel-abc") // not an archive: never touched
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if removed := pruneInitramfs(dir, 8); removed != nil {
		t.Fatalf("under the bound, removed %v", removed)
	}
	removed := pruneInitramfs(dir, 3)
	sort.Strings(removed)
	if want := paths[:2]; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want the two least recently used %v", removed, want)
	}
	for _, p := range append(paths[2:], other) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
