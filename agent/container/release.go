package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
)

// execFifoName is the fifo in a created container's state directory
// (<root>/<id>/) through which runc's and crun's inits wait for start.
const execFifoName = "exec.fifo"

// release lets a created container's init exec the user's process: what
// `<runtime> start` does, done by the agent itself, because under TCG a
// runtime process costs 75-100 ms whatever it does (docs/benchmarks.md).
// Both runtimes' start only passes the exec fifo; everything the container's
// isolation consists of was set up by create:
//   - crun's start (crun 1.8, libcrun_container_start) reads the status and
//     config, writes one byte to the fifo its init waits on, removes the
//     fifo and runs the poststart hooks;
//   - runc's start (runc 1.5, Container.exec) opens the fifo for reading,
//     which lets its init's open for writing return, reads until the init
//     has written its byte and closed the fifo, and removes it.
//
// Either way the runtime's state reads "running" afterwards, as after its
// own start. The runtime's own start still runs when the spec has
// poststart hooks (the shim drops hooks, but the agent does not rely on it)
// and whenever the fifo does not behave as expected (missing: not created,
// or another layout; no reader or writer: the init is gone, or runc's init
// does not reach the fifo), so that the runtime reports or handles
// those cases as it always did.
func (c *Container) release(ctx context.Context) error {
	if c.native != nil {
		return nil // the pause runs from its create on
	}
	if !c.poststartHooks {
		fifo := filepath.Join(c.runc.Root, c.id, execFifoName)
		var released bool
		var err error
		if c.runtimeName == contract.OCIRuntimeRunc {
			released, err = readExecFifo(fifo, c.init.exited)
		} else {
			released, err = writeExecFifo(fifo)
		}
		if released || err != nil {
			return err
		}
	}
	return c.runc.Start(ctx, c.id)
}

// fifoWait bounds how long the agent waits for runc's init to open its
// fifo before it leaves the start to runc.
const fifoWait = 10 * time.Second

// readExecFifo does runc's side of start: open the fifo for reading, read
// what the init writes until it closes the fifo, remove it. runc's init
// opens the fifo for writing only after runc create has returned, so the
// agent's read end stays open until the init has written (a read end that
// went away between its open and its write would fail the init's write);
// meanwhile an empty read means "not yet". released is false, with no
// error, when the fifo cannot be opened, or the init exits or does not
// write within fifoWait: runc's start then reports it. The open does not
// block, where runc's waits for a writer.
func readExecFifo(path string, exited func() bool) (released bool, _ error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, nil
	}
	f := os.NewFile(uintptr(fd), path) // non-blocking: reads wait in Go's poller
	defer f.Close()
	deadline := time.Now().Add(fifoWait)
	var got int
	buf := make([]byte, 64)
	for {
		n, err := f.Read(buf)
		got += n
		switch {
		case err == io.EOF && got > 0: // written, then closed
		case err == io.EOF: // no writer yet, or the init is gone
			if exited() || time.Now().After(deadline) {
				return false, nil
			}
			time.Sleep(time.Millisecond)
			continue
		case err != nil:
			return false, fmt.Errorf("start: read %s: %w", path, err)
		default:
			continue
		}
		break
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("start: remove %s: %w", path, err)
	}
	return true, nil
}

// writeExecFifo does crun's libcrun_status_write_exec_fifo: open the fifo
// for writing, remove it, write one byte. released is false, with no
// error, when the fifo could not be opened: the caller leaves it to crun.
// The open does not block: a fifo nobody reads (an init that died) fails
// with ENXIO, where crun's blocking open would wait for ever.
func writeExecFifo(path string) (released bool, _ error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, nil
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("start: remove %s: %w", path, err)
	}
	if _, err := f.Write([]byte{0}); err != nil {
		return false, fmt.Errorf("start: write %s: %w", path, err)
	}
	return true, nil
}

// hasPoststartHooks says whether spec asks for hooks that start runs.
func hasPoststartHooks(spec *specs.Spec) bool {
	return spec.Hooks != nil && len(spec.Hooks.Poststart) > 0
}
