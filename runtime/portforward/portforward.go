// Package portforward makes the CRI's PortForward (kubectl port-forward)
// reach the pod's listeners inside its VM.
//
// containerd's CRI serves PortForward by entering the pod's network
// namespace on the host and dialling localhost:PORT there. With podvm that
// namespace holds only the interface mirrored into the VM; its loopback is
// not the pod's, and nothing listens on it. A Forwarder fills the gap:
//
//	CRI --dial 127.0.0.1:PORT--> [pod netns: nat OUTPUT REDIRECT -> Forwarder's listener]
//	    --OpenPort(PORT), WritePort/ReadPort--> agent --> guest 127.0.0.1:PORT (or ::1)
//
// Decisions:
//   - Redirect every TCP connection to 127.0.0.1 in the namespace to one
//     listener rather than listen on the pod's ports: which ports the pod
//     serves is known only in the guest, and changes at any time. The
//     listener reads the port asked for from the connection's original
//     destination (SO_ORIGINAL_DST). Nothing else runs in the namespace,
//     so nothing else is redirected.
//   - Relay over the agent's channel rather than dial the pod's address:
//     the veth keeps that address in the namespace (runtime/network), so a
//     connection to it never leaves the namespace; from the node it needs
//     routes CNI need not give; and a listener bound to the guest's
//     loopback only, which port-forward is often used for, would stay out
//     of reach. The agent dials the guest's loopback as the CRI dials a
//     runc pod's, IPv4 first, then IPv6.
//   - The rules are made with the node's iptables, run inside the
//     namespace: the tool CNI's portmap plugin already needs on the node.
//     They live in the namespace and go with it, so a dead shim leaves
//     nothing on the host; a new Forwarder in the same namespace replaces
//     its chain's rule.
//   - Set up after the pod VM is ready, off the pod start path; a
//     port-forward that comes before it is refused, as one to a runc pod
//     whose server is not listening yet.
//   - A guest connection that cannot be opened (nothing listens there)
//     closes the host connection at once, which the CRI reports as it
//     reports a refused connection for a runc pod: the forward fails.
package portforward

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/network"
)

// GuestConn is one connection to a port on the guest's loopback.
type GuestConn interface {
	io.ReadWriteCloser
	// CloseWrite passes the host peer's end of input on to the guest.
	CloseWrite() error
}

// Opener opens connections to ports on the guest's loopback.
type Opener interface {
	OpenPort(ctx context.Context, port uint16) (GuestConn, error)
}

// Chain is the nat chain a Forwarder's redirect rule lives in, jumped to
// from OUTPUT in the pod's namespace.
const Chain = "PODVM-PORT-FORWARD"

// Forwarder relays connections made to the loopback of one pod network
// namespace into the pod VM.
type Forwarder struct {
	nsPath string
	ln     *net.TCPListener
	open   Opener
	log    *log.Entry
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
}

// Start listens inside the network namespace at nsPath, redirects the
// namespace's loopback TCP connections to the listener and relays each one
// through open. Close undoes it.
func Start(ctx context.Context, nsPath string, open Opener) (*Forwarder, error) {
	f := &Forwarder{nsPath: nsPath, open: open, conns: map[io.Closer]struct{}{},
		log: log.G(ctx).WithField("netns", nsPath)}
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	err := network.Do(nsPath, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen on the pod's loopback: %w", err)
		}
		f.ln = ln.(*net.TCPListener)
		return redirect(ctx, f.ln.Addr().(*net.TCPAddr).Port)
	})
	if err != nil {
		if f.ln != nil {
			f.ln.Close()
		}
		f.cancel()
		return nil, fmt.Errorf("port forwarding in network namespace %s: %w", nsPath, err)
	}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Port is the listener's port in the namespace.
func (f *Forwarder) Port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// redirect installs the nat rules; it runs inside the namespace.
func redirect(ctx context.Context, port int) error {
	restore, err := tool("iptables-restore")
	if err != nil {
		return err
	}
	iptables, err := tool("iptables")
	if err != nil {
		return err
	}
	// One transaction, and the check before it, run on every pod start:
	// two programs rather than three. The jump from OUTPUT is added only
	// when missing (a namespace a crashed shim set up has it already), and
	// declaring the chain flushes it when it exists (--noflush keeps
	// everything else), so a leftover rule pointing at a dead listener goes.
	jump := ""
	if run(ctx, nil, iptables, "-w", "5", "-t", "nat", "-C", "OUTPUT", "-j", Chain) != nil {
		jump = fmt.Sprintf("-A OUTPUT -j %s\n", Chain)
	}
	rules := fmt.Sprintf("*nat\n:%s - [0:0]\n-A %s -p tcp -d 127.0.0.1/32 -j REDIRECT --to-ports %d\n%sCOMMIT\n", Chain, Chain, port, jump)
	return run(ctx, strings.NewReader(rules), restore, "-w", "5", "--noflush")
}

// tool finds an iptables program on PATH or in the sbin directories, which
// a daemon's PATH does not always include.
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, err := exec.LookPath(dir + "/" + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, /usr/sbin or /sbin: install iptables on the node (Debian: apt-get install iptables)", name)
}

func run(ctx context.Context, stdin io.Reader, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.WithError(err).Error("port forwarding stopped: accept failed")
			}
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.relay(c)
		}()
	}
}

// track records an open connection for Close; false once closed.
func (f *Forwarder) track(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c io.Closer) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// relay carries one host connection to the port it was made to, in the
// guest, until both directions end.
func (f *Forwarder) relay(host *net.TCPConn) {
	port, err := originalPort(host)
	if err != nil {
		f.log.WithError(err).Warn("port forward: a connection that was not redirected; closed")
		return
	}
	logger := f.log.WithField("port", port)
	guest, err := f.open.OpenPort(f.ctx, port)
	if err != nil {
		logger.WithError(err).Info("port forward: cannot connect in the pod VM; the host connection is closed")
		return
	}
	if !f.track(guest) {
		guest.Close()
		return
	}
	defer f.untrack(guest)
	logger.Debug("port forward: connection relayed into the pod VM")

	// Each direction passes its end of input on as a half-close; an error
	// in either ends both, so that neither waits on a peer that is gone.
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(guest, host)
		if err == nil {
			err = guest.CloseWrite()
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(host, guest)
		if err == nil {
			err = host.CloseWrite()
		}
		errc <- err
	}()
	for range 2 {
		if err := <-errc; err != nil {
			logger.WithError(err).Debug("port forward: connection ended with an error")
			host.Close()
			guest.Close()
		}
	}
}

// originalPort is the port the connection was made to before the
// namespace's REDIRECT rule sent it to the listener.
func originalPort(c *net.TCPConn) (uint16, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		addr unix.RawSockaddrInet4
		serr error
		size = uint32(unsafe.Sizeof(addr))
		cerr = rc.Control(func(fd uintptr) {
			_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
				uintptr(unsafe.Pointer(&addr)), uintptr(unsafe.Pointer(&size)), 0)
			if errno != 0 {
				serr = errno
			}
		})
	)
	if cerr != nil {
		return 0, cerr
	}
	if serr != nil {
		return 0, fmt.Errorf("original destination (SO_ORIGINAL_DST): %w", serr)
	}
	// Port is in network byte order in memory.
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&addr.Port))[:]), nil
}

// Close stops accepting, closes every relayed connection on both sides and
// waits (a bounded time) for the relays to end. The namespace's rules stay:
// they go with the namespace.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	conns := f.conns
	f.conns = map[io.Closer]struct{}{}
	f.mu.Unlock()

	err := f.ln.Close()
	f.cancel()
	for c := range conns {
		c.Close()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		f.log.Warnf("port forward: relays still running %s after close (a guest call that does not return)", closeWait)
	}
	return err
}

// closeWait bounds Close's wait for relays, whose guest calls end when the
// agent connection does.
const closeWait = 2 * time.Second
