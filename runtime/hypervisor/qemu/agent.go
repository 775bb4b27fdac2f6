package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// frontendCheckTimeout bounds the QMP question "has the guest opened the
// agent port?" asked before each serial dial.
const frontendCheckTimeout = time.Second

// DialAgent connects to podvm-agent.
//
// vsock: AF_VSOCK to (CID, AgentVsockPort); refused at once while the agent
// does not listen.
//
// serial: QEMU's end of the virtio-serial port is a unix socket that accepts
// a connection whether or not the guest is there, and the guest sees EOF on
// reads while no host is connected. To fail fast like vsock, DialAgent first
// asks QMP whether the guest has opened the port. The port is one byte
// stream: it carries one connection at a time, so a second DialAgent while
// one is open fails instead of queueing behind it.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	v.mu.Lock()
	state, l, qmp := v.state, v.launch, v.qmp
	v.mu.Unlock()
	if state != stateRunning {
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: VM is not running", v.cfg.ID)
	}
	select {
	case <-v.done:
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: VM has exited: %w", v.cfg.ID, v.ExitError())
	default:
	}
	switch l.Transport {
	case hypervisor.TransportVsock:
		c, err := dialVsock(ctx, l.VsockCID, hypervisor.AgentVsockPort)
		if err != nil {
			return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
		}
		return c, nil
	default:
		return v.dialSerial(ctx, l, qmp)
	}
}

func (v *VM) dialSerial(ctx context.Context, l launch, qmp *qmpClient) (net.Conn, error) {
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
			return nil, fmt.Errorf("qemu: sandbox %s: dial agent: the guest has not opened port %s yet", v.cfg.ID, hypervisor.AgentSerialPortName)
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", l.path(agentSocketName))
	if err != nil {
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
	}
	if err := awaitReadyLine(ctx, c); err != nil {
		c.Close()
		v.mu.Lock()
		v.serialClosedAt = time.Now()
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
	return sc, nil
}

// readyLineTimeout bounds the wait for the agent's ready line once the
// guest has the port open: the agent writes it as soon as it sees the host,
// which it polls for every 50 ms. It is long because giving up is costly:
// under TCG with several VMs on two cores the agent's thread may not run
// for seconds, and each hang-up starts the grace period below.
const readyLineTimeout = 10 * time.Second

// serialHangupGrace is how long the host end stays closed before the next
// dial. The guest learns of a hang-up only if its reader runs while no host
// is connected (virtio-serial signals no reconnect): with a 10 ms gap a
// starved guest missed it, stayed in the old session and never announced
// again, and every later dial timed out. 500 ms is ten guest poll periods.
const serialHangupGrace = 500 * time.Millisecond

// awaitReadyLine reads hypervisor.AgentSerialReadyLine, which the agent
// writes each time a host connects; anything else means the stream is not
// at the start of a fresh agent connection.
func awaitReadyLine(ctx context.Context, c net.Conn) error {
	deadline := time.Now().Add(readyLineTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	line := make([]byte, len(hypervisor.AgentSerialReadyLine))
	if _, err := io.ReadFull(c, line); err != nil {
		return fmt.Errorf("wait for the agent's ready line: %w", err)
	}
	if string(line) != hypervisor.AgentSerialReadyLine {
		return fmt.Errorf("agent channel sent %q instead of its ready line", line)
	}
	return nil
}

// serialConn frees the channel for the next DialAgent when closed.
type serialConn struct {
	net.Conn
	vm   *VM
	once sync.Once
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
