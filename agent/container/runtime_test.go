package container

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
)

func TestSetRuntime(t *testing.T) {
	dir := t.TempDir()
	crun := filepath.Join(dir, "crun")
	if err := os.WriteFile(crun, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	exits := make(chan runc.Exit)
	defer close(exits)
	m := NewManager(Config{Runc: "/nonexistent/runc", Crun: crun}, exits)
	if got := m.Runtime(); got != "runc" {
		t.Fatalf("default runtime %q, want runc", got)
	}
	// Choosing the runtime already chosen checks nothing.
	for _, name := range []string{"", "runc"} {
		if err := m.SetRuntime(name); err != nil {
			t.Errorf("SetRuntime(%q): %v", name, err)
		}
	}
	if err := m.SetRuntime("youki"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("SetRuntime(youki) = %v, want InvalidArgument", err)
	}
	if err := m.SetRuntime("crun"); err != nil || m.Runtime() != "crun" {
		t.Fatalf("SetRuntime(crun) = %v, runtime %q", err, m.Runtime())
	}
	// Back to runc: its binary is missing.
	if err := m.SetRuntime("runc"); err == nil || m.Runtime() != "crun" {
		t.Errorf("SetRuntime(runc) with no runc binary = %v, runtime %q", err, m.Runtime())
	}
	m.mu.Lock()
	m.creating["c1"] = struct{}{}
	m.mu.Unlock()
	m.cfg.Runc = crun // any file will do
	if err := m.SetRuntime("runc"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("SetRuntime(runc) while a container is created = %v, want FailedPrecondition", err)
	}
}

func TestCrunGetsSpecVersion10(t *testing.T) {
	for runtime, want := range map[string]string{"crun": "1.0.2", "runc": "1.2.1"} {
		rt, err := runtimeFor(GuestConfig, runtime)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		raw := []byte(`{"ociVersion":"1.2.1","process":{"args":["true"]},"root":{"path":"rootfs"}}`)
		spec, err := writeBundle(dir, "c1", raw, bundleOptions{specVersion: rt.specVersion})
		if err != nil {
			t.Fatal(err)
		}
		if spec.Version != want {
			t.Errorf("ociVersion %q for %s, want %s (crun 1.8.1 refuses all but 1.0.x)", spec.Version, runtime, want)
		}
	}
}
