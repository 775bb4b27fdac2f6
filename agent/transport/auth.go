package transport

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/kmsg"
	agentsecret "github.com/podvm/podvm/agent/secret"
)

// authTimeout bounds one authentication: the host answers the challenge at
// once, so a connection that does not has no secret, or has gone.
const authTimeout = 10 * time.Second

// maxPendingAuth bounds the connections being authenticated at once; more
// are closed at once. Each holds a goroutine and a socket until it answers
// or authTimeout passes.
const maxPendingAuth = 16

// failureLogEvery rate-limits the kernel log lines about failed
// authentications: a flood of bad connections must not flood the console.
const failureLogEvery = 10 * time.Second

// authenticator checks hosts on one transport (contract.GuestAuth) and
// counts and reports the ones that fail.
type authenticator struct {
	secret    *agentsecret.Key
	transport contract.Transport
	log       io.Writer // kmsg.Writer; a buffer in tests

	failures atomic.Uint64
	mu       sync.Mutex
	lastLog  time.Time
	unlogged uint64
}

func newAuthenticator(secret []byte, transport contract.Transport) (*authenticator, error) {
	key, err := agentsecret.NewKey(secret)
	if err != nil {
		return nil, err
	}
	return newKeyAuthenticator(key, transport), nil
}

func newKeyAuthenticator(secret *agentsecret.Key, transport contract.Transport) *authenticator {
	return &authenticator{secret: secret, transport: transport, log: kmsg.Writer{}}
}

// deadliner is what check needs of a conn or an open port.
type deadliner interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// check authenticates the host on c within authTimeout, dropping lines
// equal to skip before its answer (contract.GuestAuth). A failure is
// counted and reported.
func (a *authenticator) check(c deadliner, skip string, peer string) error {
	c.SetDeadline(time.Now().Add(authTimeout))
	err := contract.GuestAuth(c, a.secret.Bytes(), a.transport, skip)
	c.SetDeadline(time.Time{})
	if err != nil {
		a.failed(peer, err)
	}
	return err
}

// failed counts a failure and writes it to the kernel log, at most once
// per failureLogEvery, with the number of failures not reported since.
func (a *authenticator) failed(peer string, err error) {
	n := a.failures.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if !a.lastLog.IsZero() && now.Sub(a.lastLog) < failureLogEvery {
		a.unlogged++
		return
	}
	a.lastLog = now
	fmt.Fprintf(a.log, "%s: refused connection from %s: %v (%d failed authentications so far, %d not reported)\n",
		a.transport, peer, err, n, a.unlogged)
	a.unlogged = 0
}

// authListener serves only connections whose host proved it holds the
// secret, and at most one of them at a time: a newly authenticated
// connection replaces the current one (see docs/agent.md,
// "Authentication"). Connections are authenticated each in its own
// goroutine, so one that never answers delays nobody, and a connection that
// fails never touches the current session.
type authListener struct {
	net.Listener
	auth *authenticator

	sessions  chan net.Conn
	errs      chan error
	pending   atomic.Int32
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	current net.Conn
}

// authenticate wraps a listener of independent connections (vsock, unix).
func authenticate(l net.Listener, a *authenticator) *authListener {
	al := &authListener{Listener: l, auth: a, sessions: make(chan net.Conn),
		errs: make(chan error, 1), closed: make(chan struct{})}
	go al.acceptLoop()
	return al
}

func (l *authListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.errs <- err
			return
		}
		if l.pending.Add(1) > maxPendingAuth {
			l.pending.Add(-1)
			l.auth.failed(c.RemoteAddr().String(), fmt.Errorf("%d connections already authenticating", maxPendingAuth))
			c.Close()
			continue
		}
		go l.admit(c)
	}
}

// admit authenticates c and, if it passes, hands it to Accept.
func (l *authListener) admit(c net.Conn) {
	err := l.auth.check(c, "", c.RemoteAddr().String())
	l.pending.Add(-1)
	if err != nil {
		c.Close()
		return
	}
	select {
	case l.sessions <- c:
	case <-l.closed:
		c.Close()
	}
}

// Accept returns the next authenticated connection and closes the one it
// replaces.
func (l *authListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.sessions:
		var old net.Conn
		l.mu.Lock()
		old, l.current = l.current, c
		l.mu.Unlock()
		if old != nil {
			old.Close()
		}
		return c, nil
	case err := <-l.errs:
		l.errs <- err // for the next Accept
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; the current session stays usable until closed.
func (l *authListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
