package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publish puts n ready fake VMs of shape w into p, each with a file
// naming it, and returns their ids.
func publish(t *testing.T, p Pool, n int, w Want) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id, err := p.NewDir()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.VMDir(id), "whoami"), []byte(id), 0o600); err != nil {
			t.Fatal(err)
		}
		e := Entry{ID: id, Key: w.Key, VCPUs: w.VCPUs, MemoryMiB: w.MemoryMiB, Booted: time.Now()}
		if err := p.Publish(e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

var small = Want{Key: "k1", VCPUs: 1, MemoryMiB: 256}

func TestClaimOnceUnderConcurrency(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	ids := publish(t, p, 20, small)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed = map[string]string{} // VM id -> claimer's dest
		noVM    atomic.Int32
	)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dest := filepath.Join(root, fmt.Sprintf("sandbox-%d", i))
			e, err := p.Claim(small, dest)
			var none *ErrNoVM
			if errors.As(err, &none) {
				noVM.Add(1)
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			who, err := os.ReadFile(filepath.Join(dest, "whoami"))
			if err != nil || string(who) != e.ID {
				t.Errorf("claim of %s into %s: whoami %q, %v", e.ID, dest, who, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := claimed[e.ID]; ok {
				t.Errorf("VM %s claimed twice: %s and %s", e.ID, prev, dest)
			}
			claimed[e.ID] = dest
		}(i)
	}
	wg.Wait()
	if len(claimed) != len(ids) || noVM.Load() != 30 {
		t.Errorf("%d of %d VMs claimed, %d claims found none (want 30)", len(claimed), len(ids), noVM.Load())
	}
	if ready, booting, _ := p.Ready(); len(ready) != 0 || booting != 0 {
		t.Errorf("pool after the claims: %d ready, %d booting", len(ready), booting)
	}
}

func TestClaimRacesRetire(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	for round := 0; round < 20; round++ {
		id := publish(t, p, 1, small)[0]
		var wg sync.WaitGroup
		var claimErr, retireErr error
		var retired bool
		dest := filepath.Join(root, fmt.Sprintf("sandbox-%d", round))
		wg.Add(2)
		go func() { defer wg.Done(); _, claimErr = p.Claim(small, dest) }()
		go func() { defer wg.Done(); _, retired, retireErr = p.retire(id) }()
		wg.Wait()
		if retireErr != nil {
			t.Fatal(retireErr)
		}
		_, destErr := os.Stat(dest)
		if claimed := claimErr == nil; claimed == retired || claimed != (destErr == nil) {
			t.Fatalf("round %d: claimed %v (%v), retired %v: exactly one must win", round, claimed, claimErr, retired)
		}
	}
}

func TestClaimRefusesWhatDoesNotFit(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	dest := filepath.Join(root, "sandbox")
	_, err := p.Claim(small, dest)
	if none := (*ErrNoVM)(nil); !errors.As(err, &none) || !strings.Contains(err.Error(), "none ready (0 booting)") {
		t.Errorf("empty pool: %v", err)
	}
	publish(t, p, 1, small)
	if _, err := p.NewDir(); err != nil { // a VM still booting
		t.Fatal(err)
	}
	for _, w := range []Want{
		{Key: "k1", VCPUs: 2, MemoryMiB: 512},
		{Key: "k1", VCPUs: 1, MemoryMiB: 128},
		{Key: "k2", VCPUs: 1, MemoryMiB: 256},
	} {
		_, err := p.Claim(w, dest)
		var none *ErrNoVM
		if !errors.As(err, &none) || !strings.Contains(err.Error(), "the pod needs "+w.String()) ||
			!strings.Contains(err.Error(), "ready: 1x256 MiB, key k1") {
			t.Errorf("claim of %s: %v", w, err)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Errorf("claim of %s made %s", w, dest)
		}
	}
	if ready, booting, _ := p.Ready(); len(ready) != 1 || booting != 1 {
		t.Errorf("pool after refusals: %d ready, %d booting; want 1, 1", len(ready), booting)
	}
}

func TestClaimNeverReplacesDest(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	publish(t, p, 1, small)
	dest := filepath.Join(root, "sandbox")
	if err := os.Mkdir(dest, 0o700); err != nil { // empty: a plain rename(2) would replace it
		t.Fatal(err)
	}
	if _, err := p.Claim(small, dest); err == nil {
		t.Fatal("claim into an existing directory succeeded")
	}
	if ready, _, _ := p.Ready(); len(ready) != 1 {
		t.Errorf("the VM left the pool: %d ready", len(ready))
	}
}

// fakeVM records what the keeper did to it.
type fakeVM struct {
	id                string
	stopped, released atomic.Bool
	done              chan struct{}
}

func (f *fakeVM) Stop(context.Context) error { f.stopped.Store(true); return nil }
func (f *fakeVM) Release()                   { f.released.Store(true) }
func (f *fakeVM) Done() <-chan struct{}      { return f.done }

type fakeBooter struct {
	mu  sync.Mutex
	vms []*fakeVM
}

func (b *fakeBooter) boot(_ context.Context, id, dir string) (Entry, VM, error) {
	if _, err := os.Stat(dir); err != nil {
		return Entry{}, nil, err
	}
	vm := &fakeVM{id: id, done: make(chan struct{})}
	b.mu.Lock()
	b.vms = append(b.vms, vm)
	pid := 1000 + len(b.vms)
	b.mu.Unlock()
	return Entry{Key: small.Key, VCPUs: small.VCPUs, MemoryMiB: small.MemoryMiB, Pids: []int{pid}}, vm, nil
}

func (b *fakeBooter) all() []*fakeVM {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*fakeVM(nil), b.vms...)
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// runKeeper runs k until the returned stop is called (or the test ends)
// and returns Run's error.
func runKeeper(t *testing.T, k *Keeper) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- k.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error { once.Do(func() { cancel(); err = <-ran }); return err }
	t.Cleanup(func() { stop() })
	return stop
}

func readyCount(p Pool) int {
	ready, _, _ := p.Ready()
	return len(ready)
}

func TestKeeperRefillsAndLetsClaimedGo(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	b := &fakeBooter{}
	stop := runKeeper(t, &Keeper{Pool: p, Size: 2, Boot: b.boot, Poll: 5 * time.Millisecond})
	waitFor(t, "two ready VMs", func() bool { return readyCount(p) == 2 })
	e, err := p.Claim(small, filepath.Join(root, "sandbox"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a third boot", func() bool { return len(b.all()) == 3 && readyCount(p) == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, vm := range b.all() {
		claimed := vm.id == e.ID
		if vm.stopped.Load() == claimed || vm.released.Load() != claimed {
			t.Errorf("VM %s (claimed %v): stopped %v, released %v", vm.id, claimed, vm.stopped.Load(), vm.released.Load())
		}
	}
	if left, _ := os.ReadDir(p.Dir); len(left) != 1 || left[0].Name() != retiredName {
		t.Errorf("pool after the keeper ended: %v", left)
	}
	if left, _ := os.ReadDir(filepath.Join(p.Dir, retiredName)); len(left) != 0 {
		t.Errorf("retired VMs left: %v", left)
	}
	if _, err := ReadEntry(filepath.Join(root, "sandbox")); err != nil {
		t.Errorf("the claimed VM's directory: %v", err)
	}
}

func TestKeeperReplacesDeadAndOldVMs(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	b := &fakeBooter{}
	stop := runKeeper(t, &Keeper{Pool: p, Size: 1, Boot: b.boot, Poll: 5 * time.Millisecond})
	waitFor(t, "a VM", func() bool { return len(b.all()) == 1 })
	first := b.all()[0]
	close(first.done)
	waitFor(t, "the dead VM stopped and replaced", func() bool { return first.stopped.Load() && len(b.all()) == 2 })
	if _, err := os.Stat(p.VMDir(first.id)); err == nil {
		t.Error("the dead VM's directory is still in the pool")
	}
	stop()

	b2 := &fakeBooter{}
	runKeeper(t, &Keeper{Pool: Pool{Dir: filepath.Join(root, "aged")}, Size: 1, MaxAge: 20 * time.Millisecond, Boot: b2.boot, Poll: 5 * time.Millisecond})
	waitFor(t, "an aged VM replaced", func() bool { vms := b2.all(); return len(vms) >= 2 && vms[0].stopped.Load() })
}

func TestKeeperSweepsWhatAnEarlierOneLeft(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	ready := publish(t, p, 1, small)[0]
	booting, err := p.NewDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.Dir, retiredName, "0123"), 0o700); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	k := &Keeper{Pool: p, Size: 0, Poll: time.Millisecond,
		Leftover: func(dir string, e Entry, hasEntry bool) { seen[filepath.Base(dir)] = hasEntry }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := k.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{ready: true, booting: false, "0123": false}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("leftovers %v, want %v", seen, want)
	}
	if left, _ := os.ReadDir(filepath.Join(p.Dir, retiredName)); len(left) != 0 {
		t.Errorf("left after the sweep: %v", left)
	}
}

func TestKeeperStopsAClaimedVMItsSandboxLost(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	b := &fakeBooter{}
	runKeeper(t, &Keeper{Pool: p, Size: 1, Boot: b.boot, Poll: 5 * time.Millisecond,
		Claimed: filepath.Join(root, "sandboxes", "*", "vm")})
	waitFor(t, "a ready VM", func() bool { return readyCount(p) == 1 })
	sandbox := filepath.Join(root, "sandboxes", "pod-a")
	if err := os.MkdirAll(sandbox, 0o700); err != nil {
		t.Fatal(err)
	}
	e, err := p.Claim(small, filepath.Join(sandbox, "vm"))
	if err != nil {
		t.Fatal(err)
	}
	vm := b.all()[0]
	waitFor(t, "the claimed VM released and its replacement ready", func() bool { return vm.released.Load() && readyCount(p) == 1 })
	time.Sleep(20 * time.Millisecond)
	if vm.stopped.Load() {
		t.Fatalf("claimed VM %s stopped while its sandbox holds it", e.ID)
	}
	if err := os.RemoveAll(sandbox); err != nil { // what a dead shim's cleanup does
		t.Fatal(err)
	}
	waitFor(t, "the claimed VM stopped once its sandbox is gone", vm.stopped.Load)
}

func TestKeeperWaitsAfterAFailedBoot(t *testing.T) {
	var tries atomic.Int32
	failing := func(context.Context, string, string) (Entry, VM, error) {
		tries.Add(1)
		return Entry{}, nil, errors.New("no guest image")
	}
	p := Pool{Dir: filepath.Join(t.TempDir(), "cache")}
	runKeeper(t, &Keeper{Pool: p, Size: 2, Boot: failing, Poll: time.Millisecond})
	waitFor(t, "a boot", func() bool { return tries.Load() > 0 })
	time.Sleep(100 * time.Millisecond)
	if n := tries.Load(); n != 1 {
		t.Errorf("%d boots within 100 ms of a failure, want 1 (the next after %s)", n, bootRetry)
	}
	if _, booting, _ := p.Ready(); booting != 0 {
		t.Errorf("a failed boot left %d directories in the pool", booting)
	}
}
