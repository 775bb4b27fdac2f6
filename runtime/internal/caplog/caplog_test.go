package caplog

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readOr(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "<none>"
	}
	must(t, err)
	return string(b)
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	// Leftovers of an earlier VM in the same state dir go.
	must(t, os.WriteFile(path, []byte("old run"), 0o600))
	must(t, os.WriteFile(path+".1", []byte("older run"), 0o600))
	c, err := Open(path, 8, 0o600)
	must(t, err)
	defer c.Close()
	steps := []struct {
		write, cur, old string
	}{
		{"abc", "abc", "<none>"},
		{"defgh", "abcdefgh", "<none>"}, // exactly the cap: no rotation
		{"i", "i", "abcdefgh"},          // would pass the cap: rotate first
		{"jklmnop", "ijklmnop", "abcdefgh"},
		{"qr", "qr", "ijklmnop"},         // the older rotation is replaced
		{"0123456789", "23456789", "qr"}, // larger than the cap: its end only
		{"", "23456789", "qr"},
	}
	for _, s := range steps {
		n, err := c.Write([]byte(s.write))
		if err != nil || n != len(s.write) {
			t.Fatalf("Write(%q) = %d, %v", s.write, n, err)
		}
		if cur, old := readOr(t, path), readOr(t, path+".1"); cur != s.cur || old != s.old {
			t.Errorf("after %q: console.log %q, console.log.1 %q; want %q, %q", s.write, cur, old, s.cur, s.old)
		}
	}
	if c.rotations != 3 {
		t.Errorf("rotations = %d, want 3", c.rotations)
	}
}

func TestOpenLimits(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "c"), -1, 0o600); err == nil {
		t.Error("a negative cap: no error")
	}
	c, err := Open(filepath.Join(t.TempDir(), "c"), 0, 0o600)
	must(t, err)
	defer c.Close()
	if c.max != DefaultMaxBytes {
		t.Errorf("cap 0 gives %d, want DefaultMaxBytes", c.max)
	}
}

// failingWriter fails every write, as a log on a full disk does.
type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) { f.calls++; return 0, io.ErrShortWrite }

// The copy keeps draining the pipe when the log cannot be written, so the
// writer (the VMM) is never held up, and it reads in bounded chunks.
func TestCopyKeepsReading(t *testing.T) {
	r, w, err := blockingPipe()
	must(t, err)
	defer r.Close()
	fw := &failingWriter{}
	done := make(chan struct{})
	go func() { copyAll(r, fw); close(done) }()
	// Four times the pipe's default buffer: a copy that stopped would
	// block this write for good.
	big := bytes.Repeat([]byte("x"), 4*64<<10)
	wrote := make(chan error, 1)
	go func() { _, err := w.Write(big); wrote <- err }()
	select {
	case err := <-wrote:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the writer blocked: the copy stopped draining the pipe")
	}
	w.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("copyAll did not return at EOF")
	}
	if fw.calls < len(big)/chunk {
		t.Errorf("%d writes for %d bytes: chunks larger than %d?", fw.calls, len(big), chunk)
	}
}

// What a child writes reaches the file, capped, and Wait returns once
// every writer is gone.
func TestPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	log, err := Open(path, 64, 0o600)
	must(t, err)
	w, c, err := Pipe(log)
	must(t, err)
	if c.Wait(50 * time.Millisecond) {
		t.Fatal("Wait returned true with the writer still open")
	}
	for i := 0; i < 20; i++ {
		_, err := w.Write([]byte("line of the guest\n"))
		must(t, err)
	}
	_, err = w.Write([]byte("Kernel panic\n"))
	must(t, err)
	w.Close()
	if !c.Wait(5 * time.Second) {
		t.Fatal("the copy did not end after the writer closed")
	}
	cur, old := readOr(t, path), readOr(t, path+".1")
	if !strings.HasSuffix(cur, "Kernel panic\n") || len(cur) > 64 || len(old) > 64 {
		t.Errorf("console.log = %q, console.log.1 %q: want at most 64 bytes each, ending with the panic", cur, old)
	}
}
