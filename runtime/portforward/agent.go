package portforward

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/podvm/podvm/agent/api"
)

// maxChunk keeps each WritePort and ReadPort message well under ttrpc's
// 4 MiB limit (the agent caps reads at 1 MiB too).
const maxChunk = 1 << 20

// Agent opens guest connections through the pod VM's agent (OpenPort) and
// carries their bytes with WritePort and ReadPort.
type Agent struct {
	Client api.AgentServiceService
}

// OpenPort opens a connection to port on the guest's loopback.
func (a Agent) OpenPort(ctx context.Context, port uint16) (GuestConn, error) {
	r, err := a.Client.OpenPort(ctx, &api.OpenPortRequest{Port: uint32(port)})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	return &agentConn{client: a.Client, id: r.StreamId, ctx: ctx, cancel: cancel}, nil
}

// agentConn is a guest connection named by its stream id in the agent.
// Reads and writes each run on one goroutine of the relay.
type agentConn struct {
	client    api.AgentServiceService
	id        uint32
	ctx       context.Context
	cancel    context.CancelFunc
	eof       bool
	closeOnce sync.Once
}

func (c *agentConn) Read(p []byte) (int, error) {
	if c.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	r, err := c.client.ReadPort(c.ctx, &api.ReadPortRequest{StreamId: c.id, Len: uint32(min(len(p), maxChunk))})
	if err != nil {
		return 0, fmt.Errorf("read guest connection %d: %w", c.id, err)
	}
	if len(r.Data) > len(p) {
		return 0, fmt.Errorf("read guest connection %d: the agent returned %d bytes for a %d-byte read", c.id, len(r.Data), len(p))
	}
	n := copy(p, r.Data)
	if r.Eof {
		c.eof = true
		if n == 0 {
			return 0, io.EOF
		}
	}
	return n, nil
}

func (c *agentConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxChunk)]
		if _, err := c.client.WritePort(c.ctx, &api.WritePortRequest{StreamId: c.id, Data: chunk}); err != nil {
			return written, fmt.Errorf("write guest connection %d: %w", c.id, err)
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

func (c *agentConn) CloseWrite() error {
	if _, err := c.client.ClosePort(c.ctx, &api.ClosePortRequest{StreamId: c.id, WriteOnly: true}); err != nil {
		return fmt.Errorf("half-close guest connection %d: %w", c.id, err)
	}
	return nil
}

// closeTimeout bounds the ClosePort call; the connection's own context is
// cancelled by then, to end its pending reads and writes.
const closeTimeout = 2 * time.Second

// Close ends pending calls and closes the guest side; calling it again does
// nothing.
func (c *agentConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cancel()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), closeTimeout)
		defer cancel()
		if _, cerr := c.client.ClosePort(ctx, &api.ClosePortRequest{StreamId: c.id}); cerr != nil {
			err = fmt.Errorf("close guest connection %d: %w", c.id, cerr)
		}
	})
	return err
}
