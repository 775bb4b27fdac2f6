package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/podvm/podvm/agent/api"
)

// Port forwarding: the shim accepts the CRI's PortForward connections on the
// host (runtime/portforward) and relays each through one guest connection
// opened here. The pod's containers share the guest's root network
// namespace, the agent's, so its loopback is the pod's.

const (
	// maxOpenPorts bounds the connections one shim can hold open in the
	// guest, so that a runaway client cannot exhaust the agent's fds.
	maxOpenPorts = 256
	// portDialTimeout bounds one connection attempt; a loopback connect
	// is answered at once unless the listener's backlog is full.
	portDialTimeout = 5 * time.Second
)

// portTable holds the guest connections opened by OpenPort.
type portTable struct {
	mu    sync.Mutex
	next  uint32
	conns map[uint32]*net.TCPConn
}

func (t *portTable) add(c *net.TCPConn) (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.conns) >= maxOpenPorts {
		return 0, fmt.Errorf("%d forwarded connections already open: %w", maxOpenPorts, errdefs.ErrResourceExhausted)
	}
	if t.conns == nil {
		t.conns = map[uint32]*net.TCPConn{}
	}
	for {
		t.next++
		if _, taken := t.conns[t.next]; t.next != 0 && !taken {
			break
		}
	}
	t.conns[t.next] = c
	return t.next, nil
}

func (t *portTable) get(id uint32) (*net.TCPConn, error) { return t.find(id, false) }

func (t *portTable) remove(id uint32) (*net.TCPConn, error) { return t.find(id, true) }

func (t *portTable) find(id uint32, remove bool) (*net.TCPConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.conns[id]
	if !ok {
		return nil, fmt.Errorf("forwarded connection %d: %w", id, errdefs.ErrNotFound)
	}
	if remove {
		delete(t.conns, id)
	}
	return c, nil
}

// OpenPort connects to req.Port on the guest's loopback, IPv4 first and
// then IPv6, as the CRI does for runc pods (it dials localhost in the pod's
// namespace).
func (s *Service) OpenPort(ctx context.Context, req *api.OpenPortRequest) (*api.OpenPortResponse, error) {
	if req.Port == 0 || req.Port > 65535 {
		return nil, fmt.Errorf("forward port %d: not a TCP port: %w", req.Port, errdefs.ErrInvalidArgument)
	}
	d := net.Dialer{Timeout: portDialTimeout}
	port := strconv.FormatUint(uint64(req.Port), 10)
	c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		var err6 error
		if c, err6 = d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", port)); err6 != nil {
			return nil, fmt.Errorf("connect to port %d in the pod VM: %v (IPv6: %v): %w", req.Port, err, err6, errdefs.ErrUnavailable)
		}
	}
	id, err := s.ports.add(c.(*net.TCPConn))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &api.OpenPortResponse{StreamId: id}, nil
}

// WritePort writes all of req.Data; a cancelled call interrupts the write.
func (s *Service) WritePort(ctx context.Context, req *api.WritePortRequest) (*api.Empty, error) {
	c, err := s.ports.get(req.StreamId)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetWriteDeadline(time.Unix(1, 0)) })
	_, err = c.Write(req.Data)
	if !stop() {
		c.SetWriteDeadline(time.Time{})
		if err != nil {
			return nil, fmt.Errorf("write to forwarded connection %d: %w", req.StreamId, ctx.Err())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("write to forwarded connection %d: %w", req.StreamId, err)
	}
	return &api.Empty{}, nil
}

// ReadPort returns what the connection has, waiting for at least a byte;
// a cancelled call interrupts the wait.
func (s *Service) ReadPort(ctx context.Context, req *api.ReadPortRequest) (*api.ReadStreamResponse, error) {
	c, err := s.ports.get(req.StreamId)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, readLen(req.Len))
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	n, err := c.Read(buf)
	if !stop() {
		c.SetReadDeadline(time.Time{})
		if n == 0 && err != nil {
			return nil, fmt.Errorf("read from forwarded connection %d: %w", req.StreamId, ctx.Err())
		}
	}
	switch {
	case n > 0:
		// An error with data comes back on the next read.
		return &api.ReadStreamResponse{Data: buf[:n]}, nil
	case errors.Is(err, io.EOF):
		return &api.ReadStreamResponse{Eof: true}, nil
	case err != nil:
		return nil, fmt.Errorf("read from forwarded connection %d: %w", req.StreamId, err)
	}
	return &api.ReadStreamResponse{}, nil
}

// ClosePort half-closes (write_only) or closes and forgets the connection.
func (s *Service) ClosePort(ctx context.Context, req *api.ClosePortRequest) (*api.Empty, error) {
	if req.WriteOnly {
		c, err := s.ports.get(req.StreamId)
		if err != nil {
			return nil, err
		}
		return empty(c.CloseWrite())
	}
	c, err := s.ports.remove(req.StreamId)
	if err != nil {
		return nil, err
	}
	return empty(c.Close())
}
