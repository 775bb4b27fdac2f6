package jailuid

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAcquireDistinctAndReleased(t *testing.T) {
	r := Range{Base: 5000, Count: 2, Dir: t.TempDir()}
	a, err := r.Acquire("pod")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Acquire("pod")
	if err != nil {
		t.Fatal(err)
	}
	if a.UID == b.UID || a.UID < 5000 || a.UID > 5001 || b.UID < 5000 || b.UID > 5001 {
		t.Fatalf("uids %d and %d: want the two distinct uids of the range", a.UID, b.UID)
	}
	if _, err := r.Acquire("other"); err == nil {
		t.Fatal("third lease from a range of two: want an error")
	}
	a.Release()
	a.Release()
	c, err := r.Acquire("other")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if c.UID != a.UID {
		t.Fatalf("after release got %d, want the freed %d", c.UID, a.UID)
	}
}

func TestAcquireRejectsBadRange(t *testing.T) {
	for _, r := range []Range{{Base: 1, Count: 0}, {Base: 1 << 31, Count: 1}} {
		r.Dir = t.TempDir()
		if _, err := r.Acquire("x"); err == nil {
			t.Errorf("%+v: want an error", r)
		}
	}
}

// A released uid leaves no file behind (a node starts pods for months),
// and a lock taken on a file a Release unlinked meanwhile (a holder that
// opened it just before) is no lease: the uid is never held twice.
func TestReleaseRemovesFileAndStaleLockHoldsNothing(t *testing.T) {
	dir := t.TempDir()
	r := Range{Base: 7000, Count: 1, Dir: dir}
	a, err := r.Acquire("pod")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "7000")
	stale, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	a.Release()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("after release the directory holds %d files, want none", len(entries))
	}
	b, err := r.Acquire("pod")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if err := unix.Flock(int(stale.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("lock the unlinked file: %v", err)
	}
	if samePathFile(stale, path) {
		t.Fatal("a lock on the unlinked file counts as holding uid 7000, which b holds")
	}
}
