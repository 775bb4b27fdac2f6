package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
)

// A virtio-serial port is one byte stream with no notion of connections, so
// SerialListener makes one: it hands out a single net.Conn on the port, and
// when the host side goes away (the guest then reads EOF) it closes that
// conn, waits for a host to be connected again, and hands out a fresh conn
// on the reopened port. A shim that restarts or reconnects thus finds the
// agent serving again.
//
// Framing caveat: ttrpc frames are not resynchronised. If the host drops in
// the middle of a message the guest sees EOF, discards the conn and the
// partial frame with it, and the next host starts clean. But the guest only
// learns of a hangup by reading; a host that disconnects and reconnects
// before the guest has read the hangup gets the old conn's stream,
// including the tail of any frame that was in flight, and ttrpc on either
// side will fail on the garbled header. A host client must therefore treat
// a framing error after reconnecting as fatal for that connection, close it
// and dial again (the guest then sees the hangup and resets too).

// sysVirtioPorts is where the kernel lists virtio-serial ports with their
// names; there is no udev in the guest to make /dev/virtio-ports links.
const sysVirtioPorts = "/sys/class/virtio-ports"

// hostPollInterval is how often a hung-up port is checked for a new host
// when no SIGIO says so first (see hostArrivals).
const hostPollInterval = 50 * time.Millisecond

// hostPollMax is where the check's period stops doubling while SIGIO
// watches the port: the signal then brings the host at once, and the
// check only bounds the wait should a signal ever be lost. Each check
// wakes the guest's vCPU, and a VM waits here for as long as it sits in
// a factory's pool: at the fixed 50 ms that was 20 wake-ups a second in
// every pool VM (docs/agent.md, "Waiting for a host").
const hostPollMax = time.Second

// hostArrivals delivers SIGIO, which the guest kernel's virtio-console
// driver sends to a port's owner when the host opens or closes its end
// (and when data arrives) on a port in O_ASYNC mode. Waiting for it
// instead of the next poll tick takes a host's arrival from 25 ms on
// average (50 ms at worst, more under TCG timer slack) to at once, and
// that wait is on every pod's start path. Nil until a real port is
// listened on: tests use fake ports and the poll alone.
var (
	hostArrivals     chan os.Signal
	hostArrivalsOnce sync.Once
)

func notifyHostArrivals() chan os.Signal {
	hostArrivalsOnce.Do(func() {
		hostArrivals = make(chan os.Signal, 1)
		signal.Notify(hostArrivals, unix.SIGIO)
	})
	return hostArrivals
}

// setAsync turns O_ASYNC on or off for f, with this process as the owner
// that gets SIGIO. It is on only while waiting for a host: in a session
// every message from the host would raise a signal for nothing.
func setAsync(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		if on {
			if _, ferr = unix.FcntlInt(fd, unix.F_SETOWN, os.Getpid()); ferr != nil {
				return
			}
		}
		var fl int
		if fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0); ferr != nil {
			return
		}
		if on {
			fl |= unix.O_ASYNC
		} else {
			fl &^= unix.O_ASYNC
		}
		_, ferr = unix.FcntlInt(fd, unix.F_SETFL, fl)
	})
	if err != nil {
		return err
	}
	return ferr
}

// ListenSerial returns a SerialListener on the virtio-serial port named
// name (the VMM's "name=" property of the virtserialport).
func ListenSerial(name string) (*SerialListener, error) {
	path, err := FindSerialPort(sysVirtioPorts, "/dev", name)
	if err != nil {
		return nil, err
	}
	open := func() (*os.File, error) {
		// O_NOCTTY: a port must never become the agent's terminal.
		return os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}
	l := NewSerialListener(path, open)
	l.hostArrived = notifyHostArrivals()
	return l, nil
}

// FindSerialPort returns the device node (in devDir) of the virtio-serial
// port whose sysDir/<port>/name is name.
func FindSerialPort(sysDir, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return "", fmt.Errorf("serial: list ports: %w", err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name is not ours
		}
		if strings.TrimSpace(string(data)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("serial: no virtio-serial port named %q in %s", name, sysDir)
}

// SerialListener is a net.Listener over one reopenable byte stream. It
// yields one conn at a time; Accept blocks while a conn is out.
type SerialListener struct {
	path string
	open func() (*os.File, error)

	free      chan struct{} // holds a token while no conn is out
	closed    chan struct{}
	closeOnce sync.Once

	// hostArrived, if set, wakes waitHost early (SIGIO, see hostArrivals).
	hostArrived <-chan os.Signal
	// pollEvery is waitHost's fallback check period (hostPollInterval),
	// and pollMax what it doubles up to while SIGIO watches the port
	// (hostPollMax).
	pollEvery, pollMax time.Duration
	// checks counts waitHost's checks of the port, for tests.
	checks atomic.Int64
	// sessions counts the sessions begun (Accept runs one at a time).
	sessions int
	// auth, if set, admits only a host that holds the VM's secret, after
	// the handshake and before the session (Listen always sets it).
	auth *authenticator
}

// NewSerialListener returns a listener that calls open for each conn. path
// only names the listener's address. The file open returns must be
// pollable (Go puts device and socket files in non-blocking mode itself).
func NewSerialListener(path string, open func() (*os.File, error)) *SerialListener {
	l := &SerialListener{
		path:      path,
		open:      open,
		free:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		pollEvery: hostPollInterval,
		pollMax:   hostPollMax,
	}
	l.free <- struct{}{}
	return l
}

// Accept waits until the previous conn is closed and a host is connected to
// the port, then returns a conn on a freshly opened port.
func (l *SerialListener) Accept() (net.Conn, error) {
	select {
	case <-l.free:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	for logged := false; ; {
		f, err := l.open()
		if err == nil {
			var hello string
			if err = l.waitHost(f); err == nil {
				hello, err = handshake(f)
			}
			if err == nil && l.auth != nil {
				err = l.auth.check(f, hello, "host")
			}
			if err == nil {
				// One line per session: a hang report then shows whether
				// the host reconnected (and the port was reopened) on the way.
				l.sessions++
				log.L.Infof("agent channel %s: host session %d began", l.path, l.sessions)
				c := &serialConn{f: f, l: l, skip: hello, watch: newStallWatch()}
				c.watch.start(l.path, func() (bool, error) { return pollReadable(f) })
				return c, nil
			}
			f.Close()
		}
		if errors.Is(err, net.ErrClosed) {
			l.release()
			return nil, err
		}
		// The port may be busy for a moment while the old fd closes.
		if !logged {
			log.L.WithError(err).Warnf("serial port %s not usable yet; retrying", l.path)
			logged = true
		}
		select {
		case <-l.closed:
			l.release()
			return nil, net.ErrClosed
		case <-time.After(hostPollInterval):
		}
	}
}

// waitHost returns once the port is not hung up, i.e. a host is connected.
// virtio-serial reports POLLHUP while no host is connected and reads then
// return EOF at once, which ttrpc would take for a closed conn, so poll()
// cannot wait for the host: POLLHUP makes it return at once. The host's
// arrival raises SIGIO on a port in O_ASYNC mode; the periodic check stays
// as the fallback (a signal can be coalesced, or O_ASYNC refused), every
// pollEvery without SIGIO and backing off to pollMax with it.
func (l *SerialListener) waitHost(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	signalled := false
	if l.hostArrived != nil {
		if err := setAsync(f, true); err != nil {
			log.L.WithError(err).Warnf("serial port %s: no SIGIO on host arrival; polling every %s", l.path, l.pollEvery)
		} else {
			signalled = true
			defer func() {
				if err := setAsync(f, false); err != nil {
					log.L.WithError(err).Warnf("serial port %s: clear O_ASYNC", l.path)
				}
			}()
		}
	}
	for wait := l.pollEvery; ; {
		l.checks.Add(1)
		var (
			hup  bool
			perr error
			cerr error
			fds  = []unix.PollFd{{Events: unix.POLLIN}}
		)
		cerr = rc.Control(func(fd uintptr) {
			fds[0].Fd = int32(fd)
			_, perr = unix.Poll(fds, 0)
			hup = fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
		})
		if cerr != nil {
			return cerr
		}
		if errors.Is(perr, unix.EINTR) {
			// A signal (SIGIO from this very port, or the Go runtime's
			// preemption) interrupted the check: it says nothing about
			// the host, and waiting now could sleep past the wake-up
			// that was just consumed.
			continue
		}
		if perr != nil {
			return fmt.Errorf("poll %s: %w", l.path, perr)
		}
		if !hup {
			return nil
		}
		select {
		case <-l.closed:
			return net.ErrClosed
		case <-l.hostArrived: // nil: never
		case <-time.After(wait):
		}
		if signalled {
			wait = min(2*wait, max(l.pollMax, l.pollEvery))
		}
	}
}

// helloTimeout bounds the wait for the host's hello after the ready line:
// the host answers at once, so a host that sends none has gone (or is a
// stale session's), and the port is reopened for the next one.
const helloTimeout = 10 * time.Second

// handshake is the agent's side of the handshake (contract.ReadyLine),
// bounded by helloTimeout. It returns the hello line, which the conn drops
// if the host sent it more than once.
func handshake(f *os.File) (string, error) {
	f.SetReadDeadline(time.Now().Add(helloTimeout))
	defer f.SetReadDeadline(time.Time{})
	return contract.GuestHandshake(f)
}

// release lets Accept open the port again.
func (l *SerialListener) release() {
	select {
	case l.free <- struct{}{}:
	default:
	}
}

// Close stops Accept. A conn that is out stays usable until it is closed.
func (l *SerialListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr names the port.
func (l *SerialListener) Addr() net.Addr { return serialAddr(l.path) }

// serialConn is the single conn on an open port. The first read or write
// error retires it: the port is closed at once, which also aborts a write
// blocked on a host that went away (virtio-serial blocks writes while no
// host is connected, and would deliver them to the next host).
type serialConn struct {
	f    *os.File
	l    *SerialListener
	once sync.Once

	// skip is the host's hello line while the session has not begun: a
	// host sends one per ready line, so it may have sent it twice.
	skip string
	// pending holds bytes read while checking for skip, for ttrpc.
	pending []byte
	// watch reports a request that stops arriving (stall.go).
	watch *stallWatch
}

func (c *serialConn) Read(b []byte) (int, error) {
	if c.skip != "" {
		if err := c.dropRepeatedHellos(); err != nil {
			c.Close()
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		c.watch.read(b[:n])
		return n, nil
	}
	n, err := c.f.Read(b)
	c.watch.read(b[:max(n, 0)])
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.Close()
	}
	return n, err
}

func (c *serialConn) Write(b []byte) (int, error) {
	c.watch.writing(nil, true)
	n, err := c.f.Write(b)
	c.watch.writing(b[:max(n, 0)], false)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.Close()
	}
	return n, err
}

// dropRepeatedHellos reads the session's first bytes: hello lines equal to
// skip are dropped; the first other bytes end the check and stay pending.
// A ttrpc frame cannot be mistaken for a hello: its first byte, the top
// byte of a length under 4 MiB, is zero.
func (c *serialConn) dropRepeatedHellos() error {
	for {
		head := make([]byte, len(c.skip))
		if _, err := io.ReadFull(c.f, head[:1]); err != nil {
			return err
		}
		if head[0] != c.skip[0] {
			c.pending, c.skip = head[:1], ""
			return nil
		}
		if _, err := io.ReadFull(c.f, head[1:]); err != nil {
			return err
		}
		if string(head) != c.skip {
			c.pending, c.skip = head, ""
			return nil
		}
	}
}

// Close closes the port and lets the listener open it again.
func (c *serialConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.watch.close()
		err = c.f.Close()
		c.l.release()
	})
	return err
}

func (c *serialConn) LocalAddr() net.Addr                { return serialAddr(c.l.path) }
func (c *serialConn) RemoteAddr() net.Addr               { return serialAddr("host") }
func (c *serialConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *serialConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *serialConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// serialAddr is the net.Addr of a serial port: its device path.
type serialAddr string

func (a serialAddr) Network() string { return "virtio-serial" }
func (a serialAddr) String() string  { return string(a) }
