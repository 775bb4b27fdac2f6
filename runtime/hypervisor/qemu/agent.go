package qemu

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
)

// frontendCheckTimeout bounds the QMP question "has the guest opened the
// agent port?" asked before each serial dial.
const frontendCheckTimeout = time.Second

// DialAgent connects to podvm-agent.
//
// hybrid vsock: CONNECT through vhost-device-vsock's unix socket, retried
// while the guest boots (dialHybrid).
//
// kernel vsock: AF_VSOCK to (CID, contract.VsockPort); refused at once while the agent
// does not listen.
//
// serial: QEMU's end of the virtio-serial port is a unix socket that accepts
// a connection whether or not the guest is there, and the guest sees EOF on
// reads while no host is connected. To fail fast like vsock, DialAgent first
// asks QMP whether the guest has opened the port. The port is one byte
// stream: it carries one connection at a time, so a second DialAgent while
// one is open fails instead of queueing behind it.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	if err := v.Machine.CheckLive("dial agent"); err != nil {
		return nil, err
	}
	return v.dialAgent(ctx)
}

// dialAgent is DialAgent without the check that Start has finished: a
// clone's Start talks to its agent (template_restore.go).
func (v *VM) dialAgent(ctx context.Context) (net.Conn, error) {
	v.mu.Lock()
	l, qmp := v.launch, v.qmp
	v.mu.Unlock()
	switch {
	case l.HybridVsock:
		return v.dialHybrid(ctx, l)
	case l.Transport == contract.TransportVsock:
		c, err := dialVsock(ctx, l.VsockCID, contract.VsockPort)
		if err == nil {
			err = handshake(ctx, c, maxHandshakeTimeout, l)
		}
		if err != nil {
			if c != nil {
				c.Close()
			}
			return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
		}
		return c, nil
	default:
		return v.dialSerial(ctx, l, qmp)
	}
}

func (v *VM) dialSerial(ctx context.Context, l launch, qmp *qmpClient) (net.Conn, error) {
	if c := v.takeHandedOver(); c != nil {
		return c, nil
	}
	v.mu.Lock()
	busy, closedAt := v.agentConn != nil, v.serialClosedAt
	v.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: the virtio-serial channel carries one connection at a time and one is open", v.cfg.ID)
	}
	if wait := serialHangupGrace - time.Since(closedAt); wait > 0 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, ctx.Err())
		case <-time.After(wait):
		}
	}
	if qmp != nil {
		qctx, cancel := context.WithTimeout(ctx, frontendCheckTimeout)
		open, err := qmp.ChardevFrontendOpen(qctx, agentChardevID)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
		}
		if !open {
			return nil, fmt.Errorf("qemu: sandbox %s: dial agent: the guest has not opened port %s yet", v.cfg.ID, contract.SerialPortName)
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", l.Path(agentSocketName))
	if err != nil {
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
	}
	v.mu.Lock()
	timeout := min(handshakeTimeout*time.Duration(1+v.serialFailures), maxHandshakeTimeout)
	v.mu.Unlock()
	if err := handshake(ctx, c, timeout, l); err != nil {
		c.Close()
		v.mu.Lock()
		v.serialClosedAt = time.Now()
		v.serialFailures++
		v.serialHandshakeFailures++
		v.mu.Unlock()
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
	}
	sc := &serialConn{Conn: c, vm: v}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.agentConn != nil { // lost a race with another DialAgent
		c.Close()
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: the virtio-serial channel carries one connection at a time and one is open", v.cfg.ID)
	}
	v.agentConn = sc
	v.serialFailures = 0
	v.serialSessions++
	return sc, nil
}

// handshakeTimeout bounds one handshake (contract.ReadyLine):
// the agent writes its ready line as soon as it sees the host, which it
// polls for every 50 ms. Each failed handshake on a VM adds as much again,
// up to maxHandshakeTimeout: under TCG with several VMs on two cores the
// agent's thread may not run for seconds.
const (
	handshakeTimeout    = 2 * time.Second
	maxHandshakeTimeout = 10 * time.Second
)

// serialHangupGrace is how long the host end stays closed before the next
// dial. The guest learns of a hang-up only if its reader runs while no host
// is connected (virtio-serial signals no reconnect): with a 10 ms gap a
// starved guest missed it and stayed in the old session. 500 ms is ten
// guest poll periods.
const serialHangupGrace = 500 * time.Millisecond

// handshake brings a fresh connection to the start of an agent session
// within timeout: on virtio-serial the port's handshake
// (contract.HostHandshake, with a nonce of its own), then on every
// transport the proof that the shim holds the VM's secret
// (contract.HostAuth).
func handshake(ctx context.Context, c net.Conn, timeout time.Duration, l launch) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	if l.Transport != contract.TransportVsock {
		nonce, err := contract.NewNonce()
		if err != nil {
			return fmt.Errorf("agent handshake: %w", err)
		}
		if err := contract.HostHandshake(c, nonce); err != nil {
			return err
		}
	}
	return contract.HostAuth(c, l.Secret, l.Transport)
}

// serialConn frees the channel for the next DialAgent when closed, and
// keeps the session's traffic for a hang report: a request that never
// reaches the agent shows as a write with no matching guest buffer.
type serialConn struct {
	net.Conn
	vm   *VM
	once sync.Once

	mu          sync.Mutex
	sent, recvd traffic
}

// traffic counts one direction of a session.
type traffic struct {
	calls, bytes int
	last         [8]int // sizes of the last calls, oldest first once full
}

func (t *traffic) add(n int) {
	if n <= 0 {
		return
	}
	t.last[t.calls%len(t.last)] = n
	t.calls++
	t.bytes += n
}

// String gives the counts and the last sizes, oldest first.
func (t traffic) String() string {
	var sizes []string
	for i := max(0, t.calls-len(t.last)); i < t.calls; i++ {
		sizes = append(sizes, strconv.Itoa(t.last[i%len(t.last)]))
	}
	return fmt.Sprintf("%d bytes in %d calls, last sizes [%s]", t.bytes, t.calls, strings.Join(sizes, " "))
}

func (c *serialConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.recvd.add(n)
	c.mu.Unlock()
	return n, err
}

func (c *serialConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.sent.add(n)
	c.mu.Unlock()
	return n, err
}

// traffic describes the session so far (after the handshake).
func (c *serialConn) traffic() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("host wrote %s; host read %s", c.sent, c.recvd)
}

func (c *serialConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.vm.mu.Lock()
		if c.vm.agentConn == c {
			c.vm.agentConn = nil
		}
		c.vm.serialClosedAt = time.Now()
		c.vm.mu.Unlock()
	})
	return err
}
