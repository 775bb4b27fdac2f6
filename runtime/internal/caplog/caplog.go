// Package caplog keeps what a child process writes (a guest's console
// through its VMM, a helper's own log) in a file of bounded size: the
// child writes a pipe and a goroutine of the shim copies it into the file,
// which has one rotation (path and path.1, each at most the cap). On a
// node's /run, a tmpfs, an unbounded file that a guest can feed would let
// the guest take the node's containerd and kubelet down with it.
package caplog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxBytes caps each of a log's two files: 2 MiB of /run per log
// at most, and still thousands of lines of a boot, a panic or a report.
const DefaultMaxBytes = 1 << 20

// chunk is the most the copy takes from the pipe at once, and batch how
// long it waits after a read that did not fill a chunk: a child writing
// line by line costs the shim at most 1/batch reads a second, a flooding
// one full chunks.
const (
	chunk = 64 << 10
	batch = 10 * time.Millisecond
)

// File is a log that never holds more than max bytes: when the next write
// would pass max, the file becomes path.1 (replacing the older one) and a
// new one starts. A write larger than max keeps only its end.
type File struct {
	path string
	max  int64
	perm os.FileMode
	f    *os.File
	size int64
	// rotations counts how often the file was rotated.
	rotations int
}

// Open starts an empty log at path (truncating an old one) and removes an
// old path.1. limit 0 means DefaultMaxBytes.
func Open(path string, limit int64, perm os.FileMode) (*File, error) {
	if limit == 0 {
		limit = DefaultMaxBytes
	}
	if limit < 0 {
		return nil, fmt.Errorf("log %s: cap %d must be positive", path, limit)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(path + ".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, err
	}
	return &File{path: path, max: limit, perm: perm, f: f}, nil
}

// Write writes p, rotating first if p would take the file past max. It
// reports len(p) written even when the start of p was dropped.
func (c *File) Write(p []byte) (int, error) {
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
		return 0, err
	}
	return n, nil
}

func (c *File) rotate() error {
	if err := c.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(c.path, c.path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", c.path, err)
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, c.perm)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", c.path, err)
	}
	c.f, c.size = f, 0
	c.rotations++
	return nil
}

// Close closes the current file.
func (c *File) Close() error { return c.f.Close() }

// Copier copies a pipe into a File until every writer has closed it.
type Copier struct{ done chan struct{} }

// Pipe returns the write end of a pipe for a child to inherit and starts
// copying the pipe into log, which the Copier closes at the end. The
// caller closes the write end once the child has its copy.
func Pipe(log *File) (*os.File, *Copier, error) {
	r, w, err := blockingPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("log pipe: %w", err)
	}
	c := &Copier{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		copyAll(r, log)
		r.Close()
		log.Close()
	}()
	return w, c, nil
}

// Wait waits at most d until the copy has reached the end of the pipe (all
// writers gone), so that a report of the child's death quotes its last
// lines; it reports whether it has.
func (c *Copier) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// copyAll moves r into log until EOF, in chunks of at most chunk. It never
// stops reading: a log it cannot write (full disk) drops the output, so
// the writer is never held up by the file.
func copyAll(r io.Reader, log io.Writer) {
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = log.Write(buf[:n]) // dropped, see above
		}
		if err != nil {
			return
		}
		if n < len(buf) {
			time.Sleep(batch)
		}
	}
}

// blockingPipe is a pipe whose read end stays out of Go's netpoller. A VMM
// writes its serial port a byte at a time, and a pipe in the netpoller
// wakes the shim on every one of those writes, even while the copy sleeps:
// a fifth of a core under a flood. A blocking read costs one thread, woken
// only when it reads.
func blockingPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "log-pipe-r"), os.NewFile(uintptr(fds[1]), "log-pipe-w"), nil
}
