package cache

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestKeeperRefillWaitsForAQuietMoment(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	b := &fakeBooter{}
	const quiet = 400 * time.Millisecond
	runKeeper(t, &Keeper{Pool: p, Size: 2, Boot: b.boot, Poll: 5 * time.Millisecond, Quiet: quiet, QuietMax: time.Minute})
	waitFor(t, "two ready VMs", func() bool { return readyCount(p) == 2 })
	claimed := time.Now()
	if _, err := p.Claim(small, filepath.Join(root, "sandbox")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refill", func() bool { return len(b.all()) == 3 })
	if waited := time.Since(claimed); waited < quiet {
		t.Errorf("the refill booted %s after the claim, before the quiet %s", waited, quiet)
	}
}

func TestKeeperRefillsUnderASteadyStream(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	b := &fakeBooter{}
	// Claims every 50 ms never leave a quiet second; the bound lets the
	// pool refill anyway.
	runKeeper(t, &Keeper{Pool: p, Size: 2, Boot: b.boot, Poll: 5 * time.Millisecond, Quiet: time.Second, QuietMax: 300 * time.Millisecond})
	waitFor(t, "two ready VMs", func() bool { return readyCount(p) == 2 })
	claims := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := p.Claim(small, filepath.Join(root, fmt.Sprint("sandbox", claims))); err == nil {
			claims++
		}
	}
	if booted := len(b.all()) - 2; booted < 2 || claims < 4 {
		t.Errorf("under a steady stream: %d claims, %d refills; want the bound to refill the pool", claims, booted)
	}
}
