package vmm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultConsoleMaxBytes caps each of the two console files (console.log
// and console.log.1): 2 MiB of a node's /run per VM at most, whatever
// the guest writes, and still the last thousands of lines of a boot, a
// panic or the agent's slow-call report.
const DefaultConsoleMaxBytes = 1 << 20

// consoleChunk is the most the reader takes from the pipe at once, and
// consoleBatch how long it waits after a read that did not fill a chunk:
// a guest printing line by line costs the shim at most 1/consoleBatch
// reads a second, and a flooding guest full chunks.
const (
	consoleChunk = 64 << 10
	consoleBatch = 10 * time.Millisecond
)

// consoleDrainWait bounds how long a death report waits for the reader to
// reach the end of what the dead VMM wrote.
const consoleDrainWait = time.Second

// cappedLog is a file that never holds more than max bytes: when the next
// write would pass max, the file becomes path.1 (replacing the older one)
// and a new one starts. A write larger than max keeps only its end.
type cappedLog struct {
	path string
	max  int64
	f    *os.File
	size int64
	// Rotations counts how often the file was rotated.
	rotations int
}

// openCappedLog starts an empty log at path (truncating an old one, as the
// VMM's own file chardev did) and removes an old path.1.
func openCappedLog(path string, limit int64) (*cappedLog, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("console log %s: cap %d must be positive", path, limit)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	if err := os.Remove(path + ".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, fmt.Errorf("console log: %w", err)
	}
	return &cappedLog{path: path, max: limit, f: f}, nil
}

// Write writes p, rotating first if p would take the file past max. It
// reports len(p) written even when the start of p was dropped.
func (c *cappedLog) Write(p []byte) (int, error) {
	n := len(p)
	if int64(len(p)) > c.max {
		p = p[int64(len(p))-c.max:]
	}
	if c.size+int64(len(p)) > c.max && c.size > 0 {
		if err := c.rotate(); err != nil {
			return 0, err
		}
	}
	w, err := c.f.Write(p)
	c.size += int64(w)
	if err != nil {
		return 0, fmt.Errorf("console log: %w", err)
	}
	return n, nil
}

func (c *cappedLog) rotate() error {
	if err := c.f.Close(); err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	if err := os.Rename(c.path, c.path+".1"); err != nil {
		return fmt.Errorf("console log: rotate: %w", err)
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("console log: rotate: %w", err)
	}
	c.f, c.size = f, 0
	c.rotations++
	return nil
}

func (c *cappedLog) Close() error { return c.f.Close() }

// copyConsole moves the console pipe into the log until the VMM closes its
// end, in chunks of at most consoleChunk. It never stops reading: a log it
// cannot write drops the output, so the VMM (and the guest's UART) is
// never held up by the file.
func copyConsole(r io.Reader, log io.Writer) {
	buf := make([]byte, consoleChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = log.Write(buf[:n]) // full disk: dropped, see above
		}
		if err != nil {
			return
		}
		if n < len(buf) {
			time.Sleep(consoleBatch)
		}
	}
}

// ConsolePipe opens the guest console: a pipe whose write end the VMM
// inherits (its serial port writes there) and whose read end the Machine
// copies into Spec.ConsoleName, capped at Spec.ConsoleMaxBytes (0:
// DefaultConsoleMaxBytes) with one rotation. The caller closes the write
// end once the VMM has its copy (or failed to start).
func (m *Machine) ConsolePipe() (*os.File, error) {
	limit := m.spec.ConsoleMaxBytes
	if limit == 0 {
		limit = DefaultConsoleMaxBytes
	}
	log, err := openCappedLog(m.Path(m.spec.ConsoleName), limit)
	if err != nil {
		return nil, err
	}
	r, w, err := blockingPipe()
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("console pipe: %w", err)
	}
	done := make(chan struct{})
	m.mu.Lock()
	m.consoleDone = done
	m.mu.Unlock()
	go func() {
		defer close(done)
		copyConsole(r, log)
		r.Close()
		log.Close()
	}()
	return w, nil
}

// blockingPipe is a pipe whose read end stays out of Go's netpoller. The
// VMM writes its serial port a byte at a time, and a pipe in the netpoller
// wakes it on every one of those writes, even while the reader sleeps: a
// fifth of a core under a flood. A blocking read costs one thread, woken
// only when it reads.
func blockingPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "console-r"), os.NewFile(uintptr(fds[1]), "console-w"), nil
}

// drainConsole waits, at most consoleDrainWait, until the console reader
// has copied everything the (dead) VMM wrote, so that the console's tail
// in an exit reason includes the last lines.
func (m *Machine) drainConsole() {
	m.mu.Lock()
	done := m.consoleDone
	m.mu.Unlock()
	if done == nil {
		return
	}
	t := time.NewTimer(consoleDrainWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
