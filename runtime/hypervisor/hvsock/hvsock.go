// Package hvsock dials a guest vsock port through a hybrid vsock socket,
// the host end of a VM's vsock device as a unix socket: Cloud Hypervisor's
// and Firecracker's own, and vhost-device-vsock's for QEMU
// (vhost-user-vsock-device). Its callers are the hypervisor drivers'
// DialAgent. The host end is a file in the sandbox's 0700 state dir, so
// unlike AF_VSOCK (not network-namespaced) no other pod on the node can
// reach it.
package hvsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/internal/ctxend"
)

// Hybrid vsock (Firecracker's design, which Cloud Hypervisor and
// vhost-device-vsock share): the VMM listens on a unix socket; a host process connects, writes
// "CONNECT <port>\n", and the VMM opens a vsock stream to that guest port.
// When the guest accepts, the VMM answers "OK <host port>\n", where the
// number is the host-side port it assigned to the stream (1<<30 and up;
// vhost-device-vsock answers with the guest port instead, so any number is
// accepted); from then on the socket carries the stream. When nothing
// listens on the guest port, or the guest's vsock driver does not answer
// within the VMM's own timeout (2 s), the VMM closes the socket without a
// word; vhost-device-vsock may close before the client has written its
// CONNECT, which the client sees as EPIPE or ECONNRESET on the write.
// Anything else is not a hybrid vsock socket, or not a sane one.

// ErrGuestNotListening is a refused CONNECT: the VMM closed the connection
// without answering, which is what it does while nothing listens on the
// guest port (or the guest's vsock driver is not up yet). Worth retrying.
var ErrGuestNotListening = errors.New("the VMM closed the connection without an answer: nothing listens on the guest port yet")

// HandshakeError is an answer that is not "OK <number>\n": the socket is not
// a hybrid vsock socket, or its VMM is broken. Not worth retrying.
type HandshakeError struct {
	Port  uint32
	Reply string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("hybrid vsock: unexpected reply %q to \"CONNECT %d\" (want \"OK <port>\")", e.Reply, e.Port)
}

// MaxReplyLine bounds the answer to CONNECT; "OK 4294967295\n" is 14 bytes.
const MaxReplyLine = 32

// Dialer dials one guest port through a VMM's hybrid vsock socket.
type Dialer struct {
	// Path is the VMM's vsock unix socket (VsockConfig.socket).
	Path string
	// Port is the guest port.
	Port uint32
	// HandshakeTimeout bounds one attempt: connect, CONNECT line, answer.
	// It exceeds the VMM's own 2 s connection-request timeout, so a guest
	// whose vsock driver is not up yet is seen as a refusal, not a hang.
	HandshakeTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between attempts, which
	// doubles from the first to the second.
	MinBackoff, MaxBackoff time.Duration
	// Secret, if set, is proven to the agent after the VMM's OK
	// (contract.HostAuth), within the same timeout; a refusal is not
	// retried. Nil gives the bare stream.
	Secret []byte
}

// Defaults of Dialer.
const (
	defaultHandshakeTimeout = 3 * time.Second
	defaultMinBackoff       = 5 * time.Millisecond
	defaultMaxBackoff       = 100 * time.Millisecond
)

// New returns a Dialer of port through the socket at path, with the
// default timeout and backoff.
func New(path string, port uint32) Dialer {
	return Dialer{Path: path, Port: port, HandshakeTimeout: defaultHandshakeTimeout,
		MinBackoff: defaultMinBackoff, MaxBackoff: defaultMaxBackoff}
}

// Dial connects, retrying while the guest is not listening yet (the guest
// is booting, or its agent starting), until ctx ends or abort is closed
// (the VM died). An answer that is not OK ends the retries at once. The
// error of a failed Dial says how many attempts were made and the last
// attempt's error; when ctx ends during an attempt, that attempt's error is
// the consequence, and the one before it, with ctx's, says why.
func (h Dialer) Dial(ctx context.Context, abort <-chan struct{}) (net.Conn, error) {
	start := time.Now()
	delay := h.MinBackoff
	var last error
	for attempt := 1; ; attempt++ {
		c, err := h.DialOnce(ctx)
		if err == nil {
			return c, nil
		}
		if end := ctxend.Err(ctx); end != nil {
			if last == nil {
				last = err
			}
			return nil, h.giveUp(attempt, start, fmt.Errorf("%w (then: %w)", last, end))
		}
		if !retryable(err) {
			return nil, h.giveUp(attempt, start, err)
		}
		last = err
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, h.giveUp(attempt, start, fmt.Errorf("%w (then: %w)", err, ctx.Err()))
		case <-abort:
			t.Stop()
			return nil, fmt.Errorf("guest port %d: the VM exited while dialing (last error: %w)", h.Port, err)
		case <-t.C:
		}
		delay = min(2*delay, h.MaxBackoff)
	}
}

func (h Dialer) giveUp(attempts int, start time.Time, err error) error {
	return fmt.Errorf("guest port %d through %s: %d attempt(s) in %v: %w",
		h.Port, h.Path, attempts, time.Since(start).Round(time.Millisecond), err)
}

// retryable says whether another attempt may succeed: the guest was not
// listening yet (a silent close, seen on the write of CONNECT as EPIPE or
// ECONNRESET when it comes first), did not answer within the handshake
// timeout, or the VMM's socket is not (yet, or any more) there.
func retryable(err error) bool {
	var ne net.Error
	return errors.Is(err, ErrGuestNotListening) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// DialOnce makes one attempt. On success the returned connection carries
// the guest stream, positioned just after the VMM's OK line: the answer is
// read byte by byte so that no byte the guest sent right after it is lost.
func (h Dialer) DialOnce(ctx context.Context) (net.Conn, error) {
	timeout := h.HandshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", h.Path)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := h.handshake(ctx, c, timeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (h Dialer) handshake(ctx context.Context, c net.Conn, timeout time.Duration) error {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer c.SetDeadline(time.Time{})

	if _, err := io.WriteString(c, "CONNECT "+strconv.FormatUint(uint64(h.Port), 10)+"\n"); err != nil {
		return fmt.Errorf("send CONNECT %d: %w", h.Port, err)
	}
	line, err := ReadLine(c, MaxReplyLine)
	switch {
	case errors.Is(err, io.EOF) && line == "":
		return ErrGuestNotListening
	case errors.Is(err, errLineTooLong):
		return &HandshakeError{Port: h.Port, Reply: line + "..."}
	case err != nil && line != "":
		return fmt.Errorf("%w (cut off after %q)", &HandshakeError{Port: h.Port, Reply: line}, line)
	case err != nil:
		if cerr := ctx.Err(); errors.Is(cerr, context.Canceled) {
			return fmt.Errorf("waiting for the answer to CONNECT %d: %w", h.Port, cerr)
		}
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no answer to CONNECT %d within %v: %w", h.Port, timeout, os.ErrDeadlineExceeded)
		}
		return fmt.Errorf("read answer to CONNECT %d: %w", h.Port, err)
	}
	rest, ok := strings.CutPrefix(line, "OK ")
	if !ok {
		return &HandshakeError{Port: h.Port, Reply: line}
	}
	if _, err := strconv.ParseUint(rest, 10, 32); err != nil {
		return &HandshakeError{Port: h.Port, Reply: line}
	}
	if h.Secret == nil {
		return nil
	}
	if err := contract.HostAuth(c, h.Secret, contract.TransportVsock); err != nil {
		return fmt.Errorf("guest port %d: %w", h.Port, err)
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// ReadLine reads up to and without '\n', one byte at a time, at most limit
// bytes. It returns what it read with the error that stopped it.
func ReadLine(r io.Reader, limit int) (string, error) {
	var b [1]byte
	var line []byte
	for len(line) < limit {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(line), nil
			}
			line = append(line, b[0])
			continue
		}
		if err != nil {
			return string(line), err
		}
	}
	return string(line), errLineTooLong
}
