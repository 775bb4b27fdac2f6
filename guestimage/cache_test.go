package guestimage

import (
	"path/filepath"
	"testing"
	"time"
)

func TestLockFileWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lockFile(path, func() { t.Error("first lock waited") })
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	got := make(chan func())
	go func() {
		u, err := lockFile(path, func() { close(waited) })
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("second lock did not report waiting")
	}
	select {
	case <-got:
		t.Fatal("second lock taken while the first is held")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case u := <-got:
		u()
	case <-time.After(5 * time.Second):
		t.Fatal("second lock not taken after unlock")
	}
}

func TestCopyFileAtomic(t *testing.T) {
	dir := t.TempDir()
	src := writeTestFile(t, dir, "src", "new")
	dst := writeTestFile(t, dir, "dst", "old")
	if err := copyFileAtomic(src, dst, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := readTestFile(t, dst); got != "new" {
		t.Errorf("dst = %q", got)
	}
	if err := copyFileAtomic(filepath.Join(dir, "missing"), dst, 0o600); err == nil {
		t.Error("copy of a missing file succeeded")
	}
	if got := readTestFile(t, dst); got != "new" {
		t.Errorf("failed copy changed dst to %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}
