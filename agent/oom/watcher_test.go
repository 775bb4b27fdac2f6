package oom

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeCgroup is a memory.events file in a temporary directory. The kernel
// rewrites the real one on each memory event, which inotify sees as
// IN_MODIFY; writing the fake does the same.
type fakeCgroup struct {
	file  string
	watch bool // false: like cgroup v1, no file to follow
}

func newFake(t *testing.T, watch bool) *fakeCgroup {
	f := &fakeCgroup{file: filepath.Join(t.TempDir(), "memory.events"), watch: watch}
	f.set(t, 0)
	return f
}

func (f *fakeCgroup) set(t *testing.T, kills int) {
	t.Helper()
	data := fmt.Sprintf("low 0\nhigh 0\nmax %d\noom %d\noom_kill %d\noom_group_kill 0\n", kills, kills, kills)
	// Write in place (not rename): inotify watches the inode.
	if err := os.WriteFile(f.file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeCgroup) OOMKills() (uint64, error) {
	data, err := os.ReadFile(f.file)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, errors.New("no oom_kill")
}

func (f *fakeCgroup) EventsFile() string {
	if !f.watch {
		return ""
	}
	return f.file
}

func next(t *testing.T, w *Watcher, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return w.Next(ctx)
}

func wantNone(t *testing.T, w *Watcher) {
	t.Helper()
	if id, err := next(t, w, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %q, %v; want no event", id, err)
	}
}

// TestWatcherInotify: a kill nobody waits for (a container's child) is
// reported through inotify alone, to a Next that was already waiting.
func TestWatcherInotify(t *testing.T) {
	w := NewWatcher()
	defer w.Close()
	if w.ino == nil {
		t.Skip("no inotify on this kernel")
	}
	f := newFake(t, true)
	if base, err := w.Add("web", f); base != 0 || err != nil {
		t.Fatalf("Add = %d, %v", base, err)
	}
	got := make(chan string, 1)
	go func() {
		id, err := next(t, w, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- id
	}()
	time.Sleep(50 * time.Millisecond)
	f.set(t, 1)
	if id := <-got; id != "web" {
		t.Fatalf("event for %q, want web", id)
	}
	wantNone(t, w)
}

// TestWatcherCheckBeforeExit is the exit path: the count already rose when
// the victim is reaped, Check queues the event at once, and inotify's later
// look at the same rise adds nothing.
func TestWatcherCheckBeforeExit(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprintf("inotify=%v", watch), func(t *testing.T) {
			w := NewWatcher()
			defer w.Close()
			f := newFake(t, watch)
			f.set(t, 2) // kills before Add are history, not events
			if base, err := w.Add("db", f); base != 2 || err != nil {
				t.Fatalf("Add = %d, %v; want 2", base, err)
			}
			f.set(t, 3)
			if n, ok := w.Check("db"); n != 3 || !ok {
				t.Fatalf("Check = %d, %v; want 3", n, ok)
			}
			// Queued by Check itself: available without waiting.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if id, err := w.Next(ctx); id != "db" || err != nil {
				t.Fatalf("Next after Check = %q, %v; want db at once", id, err)
			}
			if n, ok := w.Check("db"); n != 3 || !ok {
				t.Fatalf("second Check = %d, %v", n, ok)
			}
			wantNone(t, w)
		})
	}
}

// TestWatcherOrderAndRemove: events of several containers come in the
// order of their kills, are kept while no one asks, and a removed container
// is no longer watched.
func TestWatcherOrderAndRemove(t *testing.T) {
	w := NewWatcher()
	defer w.Close()
	a, b, c := newFake(t, true), newFake(t, true), newFake(t, false)
	for id, f := range map[string]*fakeCgroup{"a": a, "b": b, "c": c} {
		if _, err := w.Add(id, f); err != nil {
			t.Fatal(err)
		}
	}
	b.set(t, 1)
	w.Check("b")
	a.set(t, 1)
	w.Check("a")
	c.set(t, 1)
	w.Check("c")
	b.set(t, 2)
	w.Check("b")
	for _, want := range []string{"b", "a", "c", "b"} {
		if id, err := next(t, w, time.Second); id != want || err != nil {
			t.Fatalf("Next = %q, %v; want %s", id, err, want)
		}
	}

	a.set(t, 2)
	w.Check("a")
	w.Remove("a")
	if id, err := next(t, w, time.Second); id != "a" || err != nil {
		t.Fatalf("event queued before Remove: %q, %v", id, err)
	}
	a.set(t, 3)
	if _, ok := w.Check("a"); ok {
		t.Fatal("Check of a removed container succeeded")
	}
	wantNone(t, w)
}

func TestWatcherQueueBound(t *testing.T) {
	w := NewWatcher()
	defer w.Close()
	f := newFake(t, false)
	if _, err := w.Add("x", f); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= maxQueued+5; i++ {
		f.set(t, i)
		w.Check("x")
	}
	w.mu.Lock()
	n := len(w.queue)
	w.mu.Unlock()
	if n != maxQueued {
		t.Fatalf("queue length %d, want %d", n, maxQueued)
	}
}
