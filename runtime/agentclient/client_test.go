package agentclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// guest answers GuestDetails and then does what the test says.
type guest struct {
	api.AgentServiceService // nil: other calls are not expected
	block                   chan struct{}
}

func (g *guest) GuestDetails(context.Context, *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	return &api.GuestDetailsResponse{AgentVersion: "test"}, nil
}

// StartContainer never answers until the test ends: a hung guest.
func (g *guest) StartContainer(ctx context.Context, _ *api.StartContainerRequest) (*api.StartContainerResponse, error) {
	select {
	case <-g.block:
	case <-ctx.Done():
	}
	return nil, errors.New("hung")
}

// WaitProcess blocks the same way; it is allowed to.
func (g *guest) WaitProcess(ctx context.Context, _ *api.WaitProcessRequest) (*api.WaitProcessResponse, error) {
	select {
	case <-g.block:
	case <-ctx.Done():
	}
	return nil, errors.New("hung")
}

// serveGuest connects a client to a guest served over a pipe and returns
// the guest's end of the pipe.
func serveGuest(t *testing.T) (*Client, net.Conn) {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{block: make(chan struct{})}
	api.RegisterAgentServiceService(srv, g)
	l := &oneConn{conn: guestEnd, done: make(chan struct{})}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { close(g.block); srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Connect(ctx, func(context.Context) (net.Conn, error) { return hostEnd, nil }, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, guestEnd
}

// oneConn is a listener that hands out one connection.
type oneConn struct {
	conn  net.Conn
	done  chan struct{}
	used  bool
	close sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConn) Close() error   { l.close.Do(func() { close(l.done) }); return nil }
func (l *oneConn) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

// TestCallsAreBounded: a guest that never answers makes a lifecycle call
// fail after CallTimeout, not hang the shim; the calls that wait for the
// guest by design are not cut short.
func TestCallsAreBounded(t *testing.T) {
	defer func(d time.Duration) { CallTimeout = d }(CallTimeout)
	CallTimeout = 200 * time.Millisecond
	c, _ := serveGuest(t)
	var hung []string // the hook runs in the caller's goroutine
	c.OnHang(func(method string) { hung = append(hung, method) })

	start := time.Now()
	_, err := c.StartContainer(context.Background(), &api.StartContainerRequest{ContainerId: "c"})
	if took := time.Since(start); err == nil || took > 5*time.Second {
		t.Errorf("StartContainer of a hung guest: %v after %s; want a timeout after %s", err, took, CallTimeout)
	}
	if err != nil && !strings.Contains(err.Error(), "agent StartContainer: no answer within") {
		t.Errorf("error %q does not name the call", err)
	}
	if len(hung) != 1 || hung[0] != "StartContainer" {
		t.Errorf("hang hook saw %q, want [StartContainer]", hung)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	start = time.Now()
	c.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: "c"})
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Errorf("WaitProcess was cut after %s; it may wait as long as its caller does", took)
	}
	if len(hung) != 1 {
		t.Errorf("hang hook called for a waiting call: %q", hung)
	}
}

// TestLost: the guest's end going away closes Lost; the host's own Close
// does not.
func TestLost(t *testing.T) {
	c, guestEnd := serveGuest(t)
	select {
	case <-c.Lost():
		t.Fatal("Lost before anything happened")
	default:
	}
	guestEnd.Close()
	select {
	case <-c.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the guest hung up and Lost stayed open")
	}

	c2, _ := serveGuest(t)
	c2.Close()
	select {
	case <-c2.Lost():
		t.Error("Close made Lost fire")
	case <-time.After(200 * time.Millisecond):
	}
}

// FuzzGuestReplies: whatever a guest sends back on the agent channel, the
// host's client neither panics nor waits past its deadline (then the
// shim's own bounds take over: CallTimeout, and Lost for a hangup). The input is
// written back as the guest's answer to the first request; inputs that
// start with a valid ttrpc header for that request's stream exercise the
// response decoding, others the framing.
func FuzzGuestReplies(f *testing.F) {
	header := func(length uint32, stream uint32, typ, flags byte) []byte {
		b := make([]byte, 10)
		binary.BigEndian.PutUint32(b, length)
		binary.BigEndian.PutUint32(b[4:], stream)
		b[8], b[9] = typ, flags
		return b
	}
	resp, _ := proto.Marshal(&ttrpc.Response{Payload: []byte{0x0a, 0x02, 'o', 'k'}})
	f.Add(append(header(uint32(len(resp)), 1, 2, 0), resp...))
	f.Add(append(header(5, 1, 2, 0), 0xff, 0xff, 0xff, 0xff, 0xff))
	f.Add(header(0xffffffff, 1, 2, 0))
	f.Add(append(header(4, 7, 2, 0), 1, 2, 3, 4))
	f.Add(append(header(3, 1, 9, 0xff), 1, 2, 3))
	f.Add([]byte("podvm-agent ready\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, reply []byte) {
		hostEnd, guestEnd := net.Pipe()
		defer hostEnd.Close()
		defer guestEnd.Close()
		go func() {
			// Read the request, then answer with the input.
			var h [10]byte
			if _, err := io.ReadFull(guestEnd, h[:]); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, guestEnd, int64(binary.BigEndian.Uint32(h[:4]))); err != nil {
				return
			}
			guestEnd.Write(reply)
			if len(reply)%2 == 0 {
				guestEnd.Close() // a guest that hangs up after its answer
				return
			}
			io.Copy(io.Discard, guestEnd) // one that says no more
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		c, err := connectOnce(ctx, func(context.Context) (net.Conn, error) { return hostEnd, nil })
		if err == nil {
			c.Close()
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("the client waited %s on a 20ms deadline", took)
		}
	})
}

// A dialer whose secret the agent refused is not retried: it will not
// become right.
func TestConnectStopsOnAuthFailure(t *testing.T) {
	dials := 0
	dial := func(context.Context) (net.Conn, error) {
		dials++
		return nil, fmt.Errorf("dial: %w", contract.ErrAuthFailed)
	}
	_, err := Connect(context.Background(), dial, 5*time.Second, nil)
	if !errors.Is(err, contract.ErrAuthFailed) || dials != 1 {
		t.Fatalf("err = %v after %d dials, want ErrAuthFailed after 1", err, dials)
	}
}

// warmGuest records the runtime WarmRuntime asked for.
type warmGuest struct {
	api.AgentServiceService
	asked chan string
}

func (g *warmGuest) WarmRuntime(_ context.Context, req *api.WarmRuntimeRequest) (*api.Empty, error) {
	g.asked <- req.OciRuntime
	if req.OciRuntime == "kata" {
		return nil, errors.New("no such runtime")
	}
	return &api.Empty{}, nil
}

// TestWarmRuntime: the call carries the runtime's name, its error comes
// back, and the connection is closed either way.
func TestWarmRuntime(t *testing.T) {
	for _, name := range []string{"crun", "kata"} {
		hostEnd, guestEnd := net.Pipe()
		srv, err := ttrpc.NewServer()
		if err != nil {
			t.Fatal(err)
		}
		g := &warmGuest{asked: make(chan string, 1)}
		api.RegisterAgentServiceService(srv, g)
		go srv.Serve(context.Background(), &oneConn{conn: guestEnd, done: make(chan struct{})})
		err = WarmRuntime(context.Background(), hostEnd, name)
		if got := <-g.asked; got != name {
			t.Errorf("agent asked to warm %q, want %q", got, name)
		}
		if (err != nil) != (name == "kata") || (err != nil && !strings.Contains(err.Error(), "no such runtime")) {
			t.Errorf("WarmRuntime(%s) = %v", name, err)
		}
		if _, werr := hostEnd.Write([]byte{0}); werr == nil {
			t.Errorf("WarmRuntime(%s) left the connection open", name)
		}
		srv.Close()
	}
}
