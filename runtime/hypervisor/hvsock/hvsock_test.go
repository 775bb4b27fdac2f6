package hvsock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
)

// vsockPeer is the VMM's end of a hybrid vsock socket, played by the test:
// it reads the CONNECT line as Cloud Hypervisor does (byte by byte, up to
// the newline) and lets behave answer it. behave gets the attempt number
// (from 1) and the line; it returns when the connection may be closed.
type vsockPeer struct {
	path     string
	ln       net.Listener
	attempts atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	lines    []string
}

func newVsockPeer(t *testing.T, behave func(n int, line string, c net.Conn)) *vsockPeer {
	t.Helper()
	p := &vsockPeer{path: socketPath(t)}
	p.listen(t, behave)
	return p
}

func (p *vsockPeer) listen(t *testing.T, behave func(n int, line string, c net.Conn)) {
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Error(err) // may run on a timer's goroutine: no Fatal
		return
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			n := int(p.attempts.Add(1))
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				line, err := ReadLine(c, MaxReplyLine)
				if err != nil {
					return
				}
				p.mu.Lock()
				p.lines = append(p.lines, line)
				p.mu.Unlock()
				behave(n, line, c)
			}()
		}
	}()
	t.Cleanup(p.close)
}

func (p *vsockPeer) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *vsockPeer) connectLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Peer behaviours.
var (
	// accept: the guest listens; OK with a host port, then the guest's
	// first bytes in the same write, then an echo.
	accept = func(_ int, _ string, c net.Conn) {
		io.WriteString(c, "OK 1073741824\nguest-first-bytes\n")
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			io.WriteString(c, "echo "+sc.Text()+"\n")
		}
	}
	// refuse: nothing listens on the port; the VMM closes without a word.
	refuse = func(int, string, net.Conn) {}
	// silent: the guest's vsock driver is not up; no answer at all.
	silent = func(_ int, _ string, c net.Conn) { io.Copy(io.Discard, c) }
	reply  = func(s string) func(int, string, net.Conn) {
		return func(_ int, _ string, c net.Conn) { io.WriteString(c, s); io.Copy(io.Discard, c) }
	}
	replyAndClose = func(s string) func(int, string, net.Conn) {
		return func(_ int, _ string, c net.Conn) { io.WriteString(c, s) }
	}
	// refuseThenSilent: the guest is not listening, then its vsock
	// driver goes quiet while it comes up.
	refuseThenSilent = func(n int, line string, c net.Conn) {
		if n > 1 {
			silent(n, line, c)
		}
	}
)

func testVsock(path string, port uint32) Dialer {
	h := New(path, port)
	h.HandshakeTimeout = 300 * time.Millisecond
	return h
}

// One attempt against each kind of answer a hybrid vsock socket can give.
func TestHybridVsockHandshake(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name    string
		port    uint32
		behave  func(int, string, net.Conn)
		check   func(t *testing.T, err error)
		maxTook time.Duration
	}{
		{"accepted", 1024, accept, func(t *testing.T, err error) { must(t, err) }, time.Second},
		{"accepted on another port", 5000, accept, func(t *testing.T, err error) { must(t, err) }, time.Second},
		{"refused: closed without an answer", 1024, refuse, func(t *testing.T, err error) {
			if !errors.Is(err, ErrGuestNotListening) || !retryable(err) {
				t.Errorf("err = %v, want ErrGuestNotListening, retryable", err)
			}
		}, time.Second},
		{"rejected with words", 1024, reply("REJECTED\n"), wantHandshakeError(`"REJECTED"`), time.Second},
		{"error text", 1024, reply("ERR no listener on port 1024\n"), wantHandshakeError(`ERR no listener`), time.Second},
		{"not a hybrid vsock socket (HTTP)", 1024, reply("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), wantHandshakeError(`HTTP/1.1 400`), time.Second},
		{"OK without a port", 1024, reply("OK\n"), wantHandshakeError(`"OK"`), time.Second},
		{"OK with garbage", 1024, reply("OK port\n"), wantHandshakeError(`"OK port"`), time.Second},
		{"answer cut off", 1024, replyAndClose("OK 10"), wantHandshakeError(`cut off after "OK 10"`), time.Second},
		{"endless line", 1024, reply(strings.Repeat("x", 100)), wantHandshakeError(`...`), time.Second},
		{"binary garbage", 1024, reply("\x00\xff\x13\n"), wantHandshakeError(`\x00\xff\x13`), time.Second},
		{"silent guest times out", 1024, silent, func(t *testing.T, err error) {
			if !errors.Is(err, os.ErrDeadlineExceeded) || !retryable(err) || !strings.Contains(err.Error(), "no answer to CONNECT 1024 within 300ms") {
				t.Errorf("err = %v", err)
			}
		}, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newVsockPeer(t, tt.behave)
			start := time.Now()
			c, err := testVsock(p.path, tt.port).DialOnce(context.Background())
			if took := time.Since(start); took > tt.maxTook {
				t.Errorf("DialOnce took %v", took)
			}
			tt.check(t, err)
			if got := p.connectLines(); len(got) != 1 || got[0] != "CONNECT "+strconv.FormatUint(uint64(tt.port), 10) {
				t.Errorf("peer received %q, want one \"CONNECT %d\"", got, tt.port)
			}
			if err != nil {
				if c != nil {
					t.Error("error with a connection")
				}
				return
			}
			defer c.Close()
			// Nothing after the OK line was swallowed by the handshake,
			// and the stream works both ways.
			c.SetDeadline(time.Now().Add(2 * time.Second))
			r := bufio.NewReader(c)
			if l, _ := r.ReadString('\n'); l != "guest-first-bytes\n" {
				t.Errorf("first guest line %q", l)
			}
			io.WriteString(c, "ping\n")
			if l, _ := r.ReadString('\n'); l != "echo ping\n" {
				t.Errorf("echo %q", l)
			}
		})
	}
}

// lateCtx reports a deadline earlier than the one its timer ends it at.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func wantHandshakeError(sub string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var he *HandshakeError
		if !errors.As(err, &he) || retryable(err) {
			t.Errorf("err = %v (%T), want a non-retryable *HandshakeError", err, err)
			return
		}
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("err = %q, want it to contain %q", err, sub)
		}
	}
}

// A booting guest: refused, then silent (vsock driver not up), then
// refused again (agent not listening), then accepted. Dial gets through.
func TestHybridVsockRetriesWhileGuestBoots(t *testing.T) {
	checkNoLeaks(t)
	p := newVsockPeer(t, func(n int, line string, c net.Conn) {
		switch n {
		case 1, 3, 4:
			refuse(n, line, c)
		case 2:
			silent(n, line, c)
		default:
			accept(n, line, c)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testVsock(p.path, 1024).Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := p.attempts.Load(); n != 5 {
		t.Errorf("%d attempts, want 5", n)
	}
}

// The socket itself may appear late (the VMM creates it while building the
// VM): a missing socket is retried too.
func TestHybridVsockSocketAppearsLate(t *testing.T) {
	checkNoLeaks(t)
	path := socketPath(t)
	p := &vsockPeer{path: path}
	time.AfterFunc(100*time.Millisecond, func() { p.listen(t, accept) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := testVsock(path, 1024).Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// Dial gives up when its ctx ends, with the count and the last refusal; it
// stops at once on an answer that is not OK, and when the VM dies.
func TestHybridVsockGivesUp(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name    string
		behave  func(int, string, net.Conn)
		ctx     time.Duration
		lateBy  time.Duration // ctx's timer fires this long after its deadline
		abortIn time.Duration
		want    []string
		is      []error
		maxN    int32
		maxTook time.Duration
	}{
		{"guest never listens", refuse, 300 * time.Millisecond, 0, 0,
			[]string{"attempt(s) in", "nothing listens on the guest port"},
			[]error{ErrGuestNotListening, context.DeadlineExceeded}, 100, 2 * time.Second},
		{"garbage ends the retries", reply("NOPE\n"), 5 * time.Second, 0, 0,
			[]string{"1 attempt(s)", `unexpected reply "NOPE"`}, nil, 1, time.Second},
		{"the VM dies", refuse, 5 * time.Second, 0, 100 * time.Millisecond,
			[]string{"the VM exited while dialing"}, []error{ErrGuestNotListening}, 100, time.Second},
		// The second attempt's handshake would end after ctx: ctx cuts
		// it short, and the refusal before it is what the caller learns.
		{"ctx ends during an attempt", refuseThenSilent, 300 * time.Millisecond, 0, 0,
			[]string{"2 attempt(s) in", "nothing listens on the guest port", "(then: context deadline exceeded)"},
			[]error{ErrGuestNotListening, context.DeadlineExceeded}, 2, 2 * time.Second},
		// The same when the connection's deadline, set from ctx's, ends
		// the attempt before ctx's timer has fired (a loaded machine).
		{"ctx's deadline passes during an attempt, its timer late", refuseThenSilent, 3 * time.Second, 2700 * time.Millisecond, 0,
			[]string{"2 attempt(s) in", "nothing listens on the guest port", "(then: context deadline exceeded)"},
			[]error{ErrGuestNotListening, context.DeadlineExceeded}, 2, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newVsockPeer(t, tt.behave)
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctx)
			defer cancel()
			if tt.lateBy > 0 {
				ctx = lateCtx{ctx, time.Now().Add(tt.ctx - tt.lateBy)}
			}
			abort := make(chan struct{})
			if tt.abortIn > 0 {
				time.AfterFunc(tt.abortIn, func() { close(abort) })
			}
			start := time.Now()
			c, err := testVsock(p.path, 1024).Dial(ctx, abort)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if took > tt.maxTook {
				t.Errorf("Dial took %v", took)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want %q", err, w)
				}
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("err does not wrap %v: %v", target, err)
				}
			}
			if n := p.attempts.Load(); n > tt.maxN {
				t.Errorf("%d attempts, want at most %d", n, tt.maxN)
			}
		})
	}
}

// With a secret, the dial ends with the agent's check after the VMM's OK:
// the stream is handed over once the agent accepted, and a wrong secret
// fails the dial without a retry.
func TestHybridVsockAuth(t *testing.T) {
	secret := []byte(strings.Repeat("s", contract.SecretSize))
	agent := func(_ int, _ string, c net.Conn) {
		io.WriteString(c, "OK 1073741824\n")
		if contract.GuestAuth(c, secret, contract.TransportVsock, "") == nil {
			io.WriteString(c, "session\n")
		}
	}
	p := newVsockPeer(t, agent)
	h := testVsock(p.path, 1024)
	h.Secret = secret
	c, err := h.Dial(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if l, _ := bufio.NewReader(c).ReadString('\n'); l != "session\n" {
		t.Errorf("first session line %q", l)
	}
	c.Close()

	h.Secret = []byte(strings.Repeat("w", contract.SecretSize))
	before := p.attempts.Load()
	if _, err := h.Dial(context.Background(), nil); !errors.Is(err, contract.ErrAuthFailed) {
		t.Fatalf("wrong secret: err = %v, want ErrAuthFailed", err)
	}
	if n := p.attempts.Load() - before; n != 1 {
		t.Errorf("a refused secret was tried %d times", n)
	}
}

// vhost-device-vsock may close a connection before the client has written
// CONNECT (its QEMU or guest not ready): the write fails with EPIPE or
// ECONNRESET, which is a refusal like a silent close, retried.
func TestHybridVsockRetriesEarlyClose(t *testing.T) {
	checkNoLeaks(t)
	for _, err := range []error{syscall.EPIPE, syscall.ECONNRESET} {
		if !retryable(fmt.Errorf("send CONNECT 1024: %w", err)) {
			t.Errorf("%v is not retryable", err)
		}
	}
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	must(t, err)
	defer ln.Close()
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n <= 3 {
				c.Close() // before reading anything
				continue
			}
			line, _ := ReadLine(c, MaxReplyLine)
			if line == "CONNECT 1024" {
				io.WriteString(c, "OK 1024\n")
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := testVsock(path, 1024).Dial(ctx, nil)
	must(t, err)
	c.Close()
}
