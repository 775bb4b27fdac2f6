package container

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestWriteExecFifo plays crun's init: it holds the fifo's read end open,
// as crun create leaves it, and must read the one byte start writes.
func TestWriteExecFifo(t *testing.T) {
	path := filepath.Join(t.TempDir(), execFifoName)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	rfd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	released, err := writeExecFifo(path)
	if err != nil || !released {
		t.Fatalf("writeExecFifo = %v, %v; want released", released, err)
	}
	buf := make([]byte, 4)
	if n, err := unix.Read(rfd, buf); err != nil || n != 1 || buf[0] != 0 {
		t.Errorf("the init read %d bytes %q, %v; want one zero byte", n, buf[:max(n, 0)], err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the fifo is still there after start (%v): crun would read the container as created", err)
	}
}

// TestWriteExecFifoLeavesItToCrun: without a fifo, or without its reader
// (the init died), the agent neither blocks nor fails: crun's own start
// reports the case.
func TestWriteExecFifoLeavesItToCrun(t *testing.T) {
	dir := t.TempDir()
	if released, err := writeExecFifo(filepath.Join(dir, "missing")); released || err != nil {
		t.Errorf("no fifo: writeExecFifo = %v, %v; want false, nil", released, err)
	}
	orphan := filepath.Join(dir, execFifoName)
	if err := unix.Mkfifo(orphan, 0o600); err != nil {
		t.Fatal(err)
	}
	if released, err := writeExecFifo(orphan); released || err != nil {
		t.Errorf("no reader: writeExecFifo = %v, %v; want false, nil", released, err)
	}
	if _, err := os.Lstat(orphan); err != nil {
		t.Errorf("a fifo without reader was removed: %v", err)
	}
}

func TestHasPoststartHooks(t *testing.T) {
	for _, tc := range []struct {
		hooks *specs.Hooks
		want  bool
	}{
		{nil, false},
		{&specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/x"}}}, false},
		{&specs.Hooks{Poststart: []specs.Hook{{Path: "/x"}}}, true},
	} {
		if got := hasPoststartHooks(&specs.Spec{Hooks: tc.hooks}); got != tc.want {
			t.Errorf("hasPoststartHooks(%+v) = %v, want %v", tc.hooks, got, tc.want)
		}
	}
}

// TestReadExecFifo plays runc's init, which opens the fifo for writing only
// after runc create has returned: the agent's read must wait for it, take
// the byte, and remove the fifo.
func TestReadExecFifo(t *testing.T) {
	path := filepath.Join(t.TempDir(), execFifoName)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	initErr := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond) // the agent reads first: nothing yet
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			initErr <- err
			return
		}
		_, err = f.Write([]byte("0"))
		f.Close()
		initErr <- err
	}()
	released, err := readExecFifo(path, func() bool { return false })
	if err != nil || !released {
		t.Fatalf("readExecFifo = %v, %v; want released", released, err)
	}
	if err := <-initErr; err != nil {
		t.Errorf("the init's side: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the fifo is still there after start (%v): runc would read the container as created", err)
	}
}

// TestReadExecFifoLeavesItToRunc: no fifo, or an init that exited without
// writing, is runc start's to report.
func TestReadExecFifoLeavesItToRunc(t *testing.T) {
	dir := t.TempDir()
	if released, err := readExecFifo(filepath.Join(dir, "missing"), func() bool { return false }); released || err != nil {
		t.Errorf("no fifo: readExecFifo = %v, %v; want false, nil", released, err)
	}
	path := filepath.Join(dir, execFifoName)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if released, err := readExecFifo(path, func() bool { return true }); released || err != nil {
		t.Errorf("exited init: readExecFifo = %v, %v; want false, nil", released, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("an exited init was waited for %v", d)
	}
}
