package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/sandbox/crash"
)

// After killing shims, Down removes the sandboxes they left, found through
// the cluster's own podvm config, and leaves one a live shim holds.
func TestSweepSandboxesOfKilledShims(t *testing.T) {
	prefix, state := t.TempDir(), t.TempDir()
	conf := filepath.Join(prefix, "share", "podvm", "config.toml")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("[runtime]\nstate_dir = \""+state+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(state, "sandboxes", "killed")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(left, "lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(lock, old, old); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(state, "sandboxes", "live")
	if err := os.MkdirAll(live, 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := crash.LockNew(live)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := os.Chtimes(filepath.Join(live, "lock"), old, old); err != nil {
		t.Fatal(err)
	}
	p := New(Options{PodvmPrefix: prefix})
	err = p.sweepSandboxes(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), left) {
		t.Errorf("sweep: got %v, want an error naming %s", err, left)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", left, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live shim's sandbox was removed: %v", err)
	}
}
