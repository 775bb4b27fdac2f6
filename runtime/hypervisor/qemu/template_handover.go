package qemu

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/agent/api"
)

// The hand-over happens on the session the shim then keeps: closing it
// would make the next dial wait serialHangupGrace (0.5 s) for the guest to
// notice the hang-up. The session stays valid after the re-key (the agent
// checks a key only when a session begins). The Handover call is written
// as one raw ttrpc frame on stream 1, so no ttrpc client is left reading
// the connection; the shim's own client then starts at stream 1 too, which
// the agent's ttrpc server would refuse (stream ids must grow within a
// connection), so the kept connection shifts every stream id by
// handoverStreams (streamShift).

// ttrpc's framing (github.com/containerd/ttrpc, channel.go): a header of
// payload length (4 bytes), stream id (4), message type (1) and flags (1),
// all big-endian, then the payload.
const (
	ttrpcHeaderLen    = 10
	ttrpcRequest      = 1
	ttrpcResponse     = 2
	ttrpcMaxMessage   = 4 << 20
	agentServiceName  = "podvm.agent.v1.AgentService"
	handoverStreamID  = 1
	handoverStreams   = 2 // stream ids the hand-over used up: 1 (and the even 2)
	handoverCallLimit = 10 * time.Second
)

// handover calls Handover with fresh entropy on a connection that proves
// the template's secret, and keeps that connection for the first
// DialAgent.
func (v *VM) handover(ctx context.Context, marks *restoreMarks) error {
	conn, err := v.dialAgentReady(ctx)
	if err != nil {
		return err
	}
	marks.mark("agent")
	sc, ok := conn.(*serialConn)
	if !ok {
		conn.Close()
		return fmt.Errorf("a clone's agent channel is virtio-serial, got %T", conn)
	}
	if err := freshHandover(ctx, sc); err != nil {
		sc.Close()
		return err
	}
	marks.mark("handover")
	sc.Conn = &streamShift{Conn: sc.Conn, delta: handoverStreams}
	v.mu.Lock()
	v.handedOver = sc
	v.mu.Unlock()
	return nil
}

// freshHandover is one Handover with fresh entropy on sc.
func freshHandover(ctx context.Context, sc *serialConn) error {
	entropy := make([]byte, handoverEntropy)
	if _, err := rand.Read(entropy); err != nil {
		return err
	}
	return rawHandover(ctx, sc.Conn, entropy)
}

// warmAgent makes the template's agent serve one request before the
// save, so that the lazy set-up of its first request (ttrpc's and
// protobuf's, message types built on first use) is in the template's RAM
// and no clone repeats it under TCG (docs/factory.md section 7, "Where a
// clone's start goes"). The request is a Handover without entropy, which
// the agent refuses before it changes anything: a real one would be
// refused too (the template's secret cannot change), and GuestDetails
// would make the boot id every clone would share. Any answer will do.
func warmAgent(ctx context.Context, conn net.Conn) error {
	sc, ok := conn.(*serialConn)
	if !ok {
		return fmt.Errorf("a template's agent channel is virtio-serial, got %T", conn)
	}
	err := rawHandover(ctx, sc.Conn, nil)
	if err == nil {
		return errors.New("warm the agent before the save: it took a Handover without entropy")
	}
	if _, answered := grpcstatus.FromError(err); !answered {
		return fmt.Errorf("warm the agent before the save: %w", err)
	}
	return nil
}

// takeHandedOver returns the hand-over's connection once, for the first
// DialAgent after Start.
func (v *VM) takeHandedOver() net.Conn {
	v.mu.Lock()
	defer v.mu.Unlock()
	sc := v.handedOver
	v.handedOver = nil
	if sc == nil {
		return nil
	}
	return sc
}

// handedOverKept says the hand-over's session waits for DialAgent.
func (v *VM) handedOverKept() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.handedOver != nil
}

// rawHandover is one Handover call on stream handoverStreamID.
func rawHandover(ctx context.Context, c net.Conn, entropy []byte) error {
	deadline := time.Now().Add(handoverCallLimit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	payload, err := proto.Marshal(&api.HandoverRequest{Entropy: entropy})
	if err != nil {
		return err
	}
	req, err := proto.Marshal(&ttrpc.Request{Service: agentServiceName, Method: "Handover", Payload: payload})
	if err != nil {
		return err
	}
	frame := make([]byte, ttrpcHeaderLen, ttrpcHeaderLen+len(req))
	binary.BigEndian.PutUint32(frame[0:], uint32(len(req)))
	binary.BigEndian.PutUint32(frame[4:], handoverStreamID)
	frame[8] = ttrpcRequest
	if _, err := c.Write(append(frame, req...)); err != nil {
		return fmt.Errorf("Handover: send: %w", err)
	}
	var h [ttrpcHeaderLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return fmt.Errorf("Handover: read the answer: %w", err)
	}
	n, id := binary.BigEndian.Uint32(h[0:]), binary.BigEndian.Uint32(h[4:])
	if h[8] != ttrpcResponse || id != handoverStreamID || n > ttrpcMaxMessage {
		return fmt.Errorf("Handover: answer is not a response on stream %d (type %d, stream %d, %d bytes)", handoverStreamID, h[8], id, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return fmt.Errorf("Handover: read the answer: %w", err)
	}
	var resp ttrpc.Response
	if err := proto.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("Handover: answer: %w", err)
	}
	if err := grpcstatus.ErrorProto(resp.Status); err != nil {
		return fmt.Errorf("Handover: %w", err)
	}
	return nil
}

// streamShift adds delta to the stream id of every ttrpc frame written
// and takes it off every frame read, so that a fresh ttrpc client can
// continue a session whose first delta stream ids are used up. Reads and
// writes each keep their own place in the frame stream.
type streamShift struct {
	net.Conn
	delta uint32

	wmu  sync.Mutex
	w    frameCursor
	rmu  sync.Mutex
	r    frameCursor
	rbuf []byte // a rewritten header not yet returned to the reader
}

// frameCursor is where a byte stream is within its frames: in a header
// (head holds its first bytes) or in a payload (body bytes left).
type frameCursor struct {
	head []byte
	body uint32
}

// feed consumes p, which continues the stream, and returns what may be
// passed on: payload bytes as they come, a header only once whole, with
// its stream id changed by add.
func (f *frameCursor) feed(p []byte, add uint32) []byte {
	var out []byte
	for len(p) > 0 {
		if f.body > 0 {
			n := min(uint32(len(p)), f.body)
			out, p, f.body = append(out, p[:n]...), p[n:], f.body-n
			continue
		}
		n := min(ttrpcHeaderLen-len(f.head), len(p))
		f.head, p = append(f.head, p[:n]...), p[n:]
		if len(f.head) < ttrpcHeaderLen {
			break
		}
		id := binary.BigEndian.Uint32(f.head[4:]) + add
		binary.BigEndian.PutUint32(f.head[4:], id)
		f.body = binary.BigEndian.Uint32(f.head[0:])
		out, f.head = append(out, f.head...), f.head[:0]
	}
	return out
}

// Write passes b on with shifted stream ids; a header's first bytes wait
// for the rest of it.
func (s *streamShift) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	out := s.w.feed(b, s.delta)
	if _, err := s.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Read returns the stream with the stream ids shifted back; it reads a
// header whole before returning any of it.
func (s *streamShift) Read(b []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(s.rbuf) == 0 {
		if s.r.body == 0 {
			var h [ttrpcHeaderLen]byte
			if _, err := io.ReadFull(s.Conn, h[:]); err != nil {
				return 0, err
			}
			s.rbuf = s.r.feed(h[:], -s.delta)
		} else {
			n, err := s.Conn.Read(b[:min(uint32(len(b)), s.r.body)])
			s.r.feed(b[:n], 0)
			return n, err
		}
	}
	n := copy(b, s.rbuf)
	s.rbuf = s.rbuf[n:]
	return n, nil
}

// SyscallConn lets the hang report read the socket's queue (unreadBytes).
func (s *streamShift) SyscallConn() (syscall.RawConn, error) {
	sc, ok := s.Conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file descriptor", s.Conn)
	}
	return sc.SyscallConn()
}
