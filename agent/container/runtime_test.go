package container

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
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

// TestAutoRuntime: auto is crun when the image has crun's binary, else
// runc.
func TestAutoRuntime(t *testing.T) {
	crun := filepath.Join(t.TempDir(), "crun")
	if err := os.WriteFile(crun, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		crun, want string
	}{
		{crun, "crun"},
		{filepath.Join(t.TempDir(), "crun"), "runc"},
		{"", "runc"},
	} {
		rt, err := runtimeFor(Config{Runc: "/bin/true", Crun: tc.crun}, "auto")
		if err != nil {
			t.Fatal(err)
		}
		if rt.name != tc.want {
			t.Errorf("auto with crun at %q: %s, want %s", tc.crun, rt.name, tc.want)
		}
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

// TestSealCrun: the sealed crun passes crun's own check of a binary safe to
// run as it is (is_self_cloned in crun's cloned_binary.c): F_GET_SEALS fails
// (a tmpfs file would answer it, and crun would then want a sealed memfd),
// its mount is read-only and _LIBCONTAINER_CLONED_BINARY is set; and it
// cannot be opened for writing. Run in a mount namespace of its own.
func TestSealCrun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	binary := filepath.Join(bin, "crun")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(clonedBinaryEnv, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with its mount namespace
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Errorf("make / private: %v", err)
			return
		}
		// As in the guest, whose root is the initramfs on tmpfs.
		if err := unix.Mount("tmpfs", bin, "tmpfs", 0, ""); err != nil {
			t.Errorf("mount tmpfs: %v", err)
			return
		}
		if err := os.WriteFile(binary, []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Error(err)
			return
		}
		if err := sealCrun(binary, filepath.Join(dir, "run", "sealed")); err != nil {
			t.Errorf("sealCrun: %v", err)
			return
		}
		checkSealed(t, binary)
		// The parents it made stay traversable (the share is mounted
		// below them later, and user-namespace containers reach it).
		if st, err := os.Stat(filepath.Join(dir, "run")); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != 0o755 {
			t.Errorf("the parent sealCrun made has mode %v, want 0755", st.Mode().Perm())
		}
	}()
	<-done
	if os.Getenv(clonedBinaryEnv) != "1" {
		t.Errorf("%s not set", clonedBinaryEnv)
	}
}

func checkSealed(t *testing.T, binary string) {
	f, err := os.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err == nil {
		t.Errorf("F_GET_SEALS answers on the sealed crun: crun would not accept it")
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("the sealed crun's mount is not read-only (flags %#x, %v)", st.Flags, err)
	}
	if w, err := os.OpenFile(binary, os.O_WRONLY, 0); err == nil {
		w.Close()
		t.Errorf("the sealed crun opens for writing")
	}
	if b, _ := io.ReadAll(f); string(b) != "#!/bin/true\n" {
		t.Errorf("the sealed crun reads %q", b)
	}
}
