package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// stdio is the agent's side of one process's standard streams: the write end
// of stdin and the read ends of stdout and stderr, or, with a terminal, the
// pty master for both directions. A stream the host did not ask for is nil
// here and /dev/null in the process.
type stdio struct {
	stdin  *sink
	stdout *source
	stderr *source
	tty    *tty // nil without a terminal
}

// newStdio makes the pipes for the requested streams and returns the
// runc-side ends as a runc.IO for `runc create`.
func newStdio(stdin, stdout, stderr bool) (_ *stdio, _ *procIO, retErr error) {
	s := &stdio{stdin: &sink{}, stdout: &source{}, stderr: &source{}}
	p, err := newProcIO()
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if retErr != nil {
			s.close()
			p.Close()
		}
	}()
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("stdin pipe: %w", err)
		}
		p.in, s.stdin.f = r, w
	}
	for _, o := range []struct {
		want bool
		proc **os.File
		src  *source
		name string
	}{{stdout, &p.out, s.stdout, "stdout"}, {stderr, &p.err, s.stderr, "stderr"}} {
		if !o.want {
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("%s pipe: %w", o.name, err)
		}
		*o.proc, o.src.f = w, r
	}
	return s, p, nil
}

// newTerminalStdio wraps the pty master runc sent over the console socket:
// stdout reads it, stdin (when asked for) writes it, stderr is empty because
// a terminal merges it into stdout.
func newTerminalStdio(master console.Console, stdin bool) (_ *stdio, retErr error) {
	s := &stdio{stdin: &sink{}, stdout: &source{pty: true}, stderr: &source{}, tty: &tty{master: master}}
	defer func() {
		if retErr != nil {
			s.close()
		}
	}()
	var err error
	if s.stdout.f, err = pollableDup(master, "pty-out"); err != nil {
		return nil, err
	}
	if stdin {
		if s.stdin.f, err = pollableDup(master, "pty-in"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// pollableDup duplicates the master in non-blocking mode, so that os.File
// uses the poller and reads honour deadlines and Close.
func pollableDup(master console.Console, name string) (*os.File, error) {
	fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// close closes the agent's ends; blocked reads return and report EOF.
func (s *stdio) close() {
	s.stdin.close()
	s.stdout.close()
	s.stderr.close()
	if s.tty != nil {
		s.tty.close()
	}
}

// tty keeps the pty master for window size changes. The streams use their
// own non-blocking duplicates of it.
type tty struct {
	mu     sync.Mutex
	master console.Console // nil once closed
}

func (t *tty) resize(width, height uint16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.master == nil {
		return fmt.Errorf("terminal is closed: %w", errdefs.ErrFailedPrecondition)
	}
	return t.master.Resize(console.WinSize{Width: width, Height: height})
}

func (t *tty) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.master != nil {
		t.master.Close()
		t.master = nil
	}
}

// source is a readable stream. Reads are serialised so that concurrent
// callers get consecutive chunks, never interleaved halves.
type source struct {
	mu  sync.Mutex
	f   *os.File // nil: not requested, reads report EOF at once
	pty bool     // a pty master reports EIO, not EOF, once the slave closes
	eof bool
}

// read returns up to n bytes, blocking until some are available. It
// reports eof once the writers have closed and everything was read. If ctx
// ends first (the host hung up) it returns ctx's error and no data is lost:
// the read is aborted with a deadline, never after taking bytes.
func (s *source) read(ctx context.Context, n int) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.eof {
		return nil, true, nil
	}
	buf := make([]byte, n)
	var got int
	err := withDeadline(ctx, s.f.SetReadDeadline, func() (err error) {
		got, err = s.f.Read(buf)
		return err
	})
	switch {
	case got > 0:
		return buf[:got], false, nil
	case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed), s.pty && errors.Is(err, syscall.EIO):
		s.eof = true
		return nil, true, nil
	case err != nil:
		return nil, false, err
	}
	return nil, false, nil
}

func (s *source) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// sink is the writable stdin stream. Writes are serialised; close does not
// wait for them, so closing stdin (or removing the container) never hangs
// behind a write blocked on a process that does not read.
type sink struct {
	mu        sync.Mutex
	f         *os.File // nil: not requested
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// write writes all of data unless ctx ends or the process stopped reading.
func (s *sink) write(ctx context.Context, data []byte) (int, error) {
	if s.f == nil {
		return 0, fmt.Errorf("stdin was not requested at create: %w", errdefs.ErrFailedPrecondition)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return 0, fmt.Errorf("stdin is closed: %w", errdefs.ErrFailedPrecondition)
	}
	var n int
	err := withDeadline(ctx, s.f.SetWriteDeadline, func() (err error) {
		n, err = s.f.Write(data)
		return err
	})
	switch {
	case errors.Is(err, syscall.EPIPE):
		return n, fmt.Errorf("process closed its stdin: %w", errdefs.ErrFailedPrecondition)
	case errors.Is(err, os.ErrClosed):
		return n, fmt.Errorf("stdin is closed: %w", errdefs.ErrFailedPrecondition)
	}
	return n, err
}

// close closes stdin so the process reads EOF. Closing twice is fine.
func (s *sink) close() error {
	s.closed.Store(true)
	if s.f == nil {
		return nil
	}
	s.closeOnce.Do(func() { s.closeErr = s.f.Close() })
	return s.closeErr
}

// withDeadline runs op and, if ctx ends meanwhile, interrupts it by setting
// a deadline in the past. It then clears the deadline for the next caller
// and reports ctx's error instead of the timeout.
func withDeadline(ctx context.Context, set func(time.Time) error, op func() error) error {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = set(time.Now())
		close(fired)
	})
	err := op()
	if !stop() {
		<-fired
		_ = set(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ctx.Err()
		}
	}
	return err
}

// procIO hands runc the process's ends of the pipes. Unrequested streams
// get /dev/null, never nil: go-runc would otherwise capture runc's output
// into a buffer and wait for it to close, which the container's init keeps
// open for its whole life.
type procIO struct {
	in, out, err *os.File
	null         *os.File
}

// newProcIO returns a procIO with every stream on /dev/null.
func newProcIO() (*procIO, error) {
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &procIO{null: f}, nil
}

func (p *procIO) Set(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.null, p.null, p.null
	if p.in != nil {
		cmd.Stdin = p.in
	}
	if p.out != nil {
		cmd.Stdout = p.out
	}
	if p.err != nil {
		cmd.Stderr = p.err
	}
}

// CloseAfterStart drops the agent's copies of the process's ends, so that
// stdout and stderr reach EOF when the process (and its children) exit.
func (p *procIO) CloseAfterStart() error { return p.Close() }

func (p *procIO) Close() error {
	for _, f := range []*os.File{p.in, p.out, p.err, p.null} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

// The runc.IO accessors go-runc never calls for create.
func (p *procIO) Stdin() io.WriteCloser { return nil }
func (p *procIO) Stdout() io.ReadCloser { return nil }
func (p *procIO) Stderr() io.ReadCloser { return nil }
