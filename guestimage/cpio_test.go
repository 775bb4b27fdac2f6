package guestimage

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parsedEntry is a newc header and body as read back by parseNewc.
type parsedEntry struct {
	Ino, Mode, UID, GID, Nlink, Mtime uint32
	RdevMajor, RdevMinor              uint32
	Name                              string
	Data                              []byte
}

// parseNewc is an independent reader for the archives cpioWriter makes. It
// checks the magic, the 4-byte alignment and the trailer, and that nothing
// follows the trailer except padding.
func parseNewc(t *testing.T, archive []byte) []parsedEntry {
	t.Helper()
	var out []parsedEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+newcHdrLen > len(archive) {
			t.Fatalf("archive ends inside a header at %d", off)
		}
		h := archive[off : off+newcHdrLen]
		if string(h[:6]) != newcMagic {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header at %d field %d: %v", off, i, err)
			}
			return uint32(v)
		}
		e := parsedEntry{Ino: field(0), Mode: field(1), UID: field(2), GID: field(3), Nlink: field(4),
			Mtime: field(5), RdevMajor: field(9), RdevMinor: field(10)}
		size, namesize := int(field(6)), int(field(11))
		if field(12) != 0 {
			t.Errorf("check field is %d, want 0 for newc", field(12))
		}
		off += newcHdrLen
		name := archive[off : off+namesize]
		if name[namesize-1] != 0 {
			t.Fatalf("name at %d not NUL-terminated", off)
		}
		e.Name = string(name[:namesize-1])
		off += namesize
		align()
		e.Data = archive[off : off+size]
		off += size
		align()
		if e.Name == cpioTrailer {
			if rest := archive[off:]; len(bytes.Trim(rest, "\x00")) != 0 {
				t.Fatalf("%d bytes of data after the trailer", len(rest))
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCpioRoundTrip(t *testing.T) {
	// Body sizes 0..5 and names of several lengths exercise every padding case.
	entries := []cpioEntry{
		{Name: "d", Mode: modeDir | 0o755},
		{Name: "d/empty", Mode: modeFile | 0o644},
		{Name: "d/one", Mode: modeFile | 0o600, Size: 1, Body: strings.NewReader("x")},
		{Name: "d/two2", Mode: modeFile | 0o644, Size: 2, Body: strings.NewReader("ab")},
		{Name: "d/three", Mode: modeFile | 0o755, Size: 3, Body: strings.NewReader("abc")},
		{Name: "d/four44", Mode: modeFile | 0o644, Size: 4, Body: strings.NewReader("abcd")},
		{Name: "d/five", Mode: modeFile | 0o644, Size: 5, Body: strings.NewReader("abcde")},
		{Name: "dev", Mode: modeDir | 0o755},
		{Name: "dev/console", Mode: modeChar | 0o600, RdevMajor: 5, RdevMinor: 1},
		{Name: "tmp", Mode: modeDir | 0o1777},
	}
	want := map[string]string{"d/one": "x", "d/two2": "ab", "d/three": "abc", "d/four44": "abcd", "d/five": "abcde"}

	var buf bytes.Buffer
	cw := newCpioWriter(&buf)
	for _, e := range entries {
		if err := cw.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	got := parseNewc(t, buf.Bytes())
	if len(got) != len(entries) {
		t.Fatalf("read back %d entries, wrote %d", len(got), len(entries))
	}
	for i, g := range got {
		e := entries[i]
		t.Run(e.Name, func(t *testing.T) {
			if g.Name != e.Name || g.Mode != e.Mode {
				t.Errorf("got %s mode %#o, want %s mode %#o", g.Name, g.Mode, e.Name, e.Mode)
			}
			if g.Ino != uint32(i+1) {
				t.Errorf("inode %d, want %d", g.Ino, i+1)
			}
			if g.UID != 0 || g.GID != 0 || g.Mtime != 0 {
				t.Errorf("uid %d gid %d mtime %d, want all 0", g.UID, g.GID, g.Mtime)
			}
			if string(g.Data) != want[e.Name] {
				t.Errorf("data %q, want %q", g.Data, want[e.Name])
			}
			wantLinks := uint32(1)
			if e.Mode&modeType == modeDir {
				wantLinks = 2
			}
			if g.Nlink != wantLinks {
				t.Errorf("nlink %d, want %d", g.Nlink, wantLinks)
			}
			if g.RdevMajor != e.RdevMajor || g.RdevMinor != e.RdevMinor {
				t.Errorf("rdev %d,%d, want %d,%d", g.RdevMajor, g.RdevMinor, e.RdevMajor, e.RdevMinor)
			}
		})
	}
}

func TestCpioWriterErrors(t *testing.T) {
	tests := []struct {
		name  string
		entry cpioEntry
		want  string
	}{
		{"absolute name", cpioEntry{Name: "/init", Mode: modeFile | 0o755}, "relative path"},
		{"empty name", cpioEntry{Name: "", Mode: modeDir | 0o755}, "relative path"},
		{"trailer name", cpioEntry{Name: cpioTrailer, Mode: modeDir | 0o755}, "relative path"},
		{"symlink", cpioEntry{Name: "l", Mode: 0o120777}, "unsupported file type"},
		{"short body", cpioEntry{Name: "f", Mode: modeFile | 0o644, Size: 10, Body: strings.NewReader("abc")}, "ended after 3 of 10"},
		{"no body", cpioEntry{Name: "f", Mode: modeFile | 0o644, Size: 1}, "no body"},
		{"too big", cpioEntry{Name: "f", Mode: modeFile | 0o644, Size: 1 << 32}, "32-bit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newCpioWriter(io.Discard).WriteEntry(tt.entry)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("write after close", func(t *testing.T) {
		cw := newCpioWriter(io.Discard)
		if err := cw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := cw.WriteEntry(cpioEntry{Name: "d", Mode: modeDir}); err == nil {
			t.Fatal("no error")
		}
	})
}

// TestCpioSystemTool reads our archive with GNU cpio: the listing must match
// and extracted files must have our content and modes.
func TestCpioSystemTool(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not on PATH (Debian package cpio; ci/install-packages.sh installs it)")
	}
	dir := t.TempDir()
	agent := writeTestFile(t, dir, "agent", "agent-bytes")
	runc := writeTestFile(t, dir, "runc", "runc-bytes!")
	var buf bytes.Buffer
	if err := writeInitramfs(&buf, initramfsFiles(agent, runc)); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "a.cpio")
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	list := exec.Command("cpio", "-t", "--quiet", "-F", archive)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	var want []string
	for _, e := range parseNewc(t, buf.Bytes()) {
		want = append(want, e.Name)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, want) {
		t.Errorf("cpio -t lists %q, want %q", got, want)
	}

	// Extract the regular files only: device nodes need root and are
	// checked by the round-trip test.
	ext := filepath.Join(dir, "x")
	if err := os.Mkdir(ext, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "-F", archive, "init", "usr/bin/runc")
	cmd.Dir = ext
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for name, content := range map[string]string{"init": "agent-bytes", "usr/bin/runc": "runc-bytes!"} {
		p := filepath.Join(ext, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(p)
		if string(data) != content || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %q mode %v, want %q mode 0755", name, data, st.Mode().Perm(), content)
		}
	}
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
