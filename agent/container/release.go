package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
)

// execFifoName is the fifo in a created container's state directory
// (<root>/<id>/) on which crun's init waits for start.
const execFifoName = "exec.fifo"

// release lets a created container's init exec the user's process: what
// `<runtime> start` does. For crun the agent does it itself: crun's start
// (crun 1.8, libcrun_container_start) reads the container's status and
// config, writes one byte to the exec fifo its init waits on, removes the
// fifo and runs the poststart hooks, and under TCG a crun process costs
// about 75 ms whatever it does (docs/benchmarks.md). The agent writes the
// same byte, so crun's state reads "running" afterwards as after its own
// start. Everything the container's isolation consists of was set up by
// create; start only releases the init. crun's own start still runs when
// the spec has poststart hooks (the shim drops hooks, but the agent does
// not rely on it) and when the fifo cannot be opened for writing (no fifo:
// not created, or another layout; no reader: the init is gone), so that
// crun reports those cases as it always did.
func (c *Container) release(ctx context.Context) error {
	if c.runtimeName == contract.OCIRuntimeCrun && !c.poststartHooks {
		released, err := writeExecFifo(filepath.Join(c.runc.Root, c.id, execFifoName))
		if released || err != nil {
			return err
		}
	}
	return c.runc.Start(ctx, c.id)
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
