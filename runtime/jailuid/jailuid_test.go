package jailuid

import "testing"

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
