package server

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
)

// upperServer accepts one connection on the loopback, answers what it reads
// in upper case once the client has half-closed, then closes.
func upperServer(t *testing.T, network, addr string) uint32 {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback listener: %v", network, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write([]byte(strings.ToUpper(string(b))))
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(port)
	return uint32(n)
}

// TestService_PortForward relays one exchange through OpenPort, WritePort,
// a half-close and ReadPort to eof, over IPv4 and over IPv6 only (the
// agent tries 127.0.0.1 first, then ::1).
func TestService_PortForward(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			a := startAgent(t, "/nonexistent/runc")
			port := upperServer(t, tc.network, tc.addr)
			ctx := ctxTimeout(t)
			open, err := a.OpenPort(ctx, &api.OpenPortRequest{Port: port})
			if err != nil {
				t.Fatal(err)
			}
			id := open.StreamId
			for _, chunk := range []string{"hello ", "guest"} {
				if _, err := a.WritePort(ctx, &api.WritePortRequest{StreamId: id, Data: []byte(chunk)}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.ClosePort(ctx, &api.ClosePortRequest{StreamId: id, WriteOnly: true}); err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for {
				r, err := a.ReadPort(ctx, &api.ReadPortRequest{StreamId: id, Len: 3})
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Data) > 3 {
					t.Fatalf("read %d bytes, asked for at most 3", len(r.Data))
				}
				got.Write(r.Data)
				if r.Eof {
					break
				}
			}
			if got.String() != "HELLO GUEST" {
				t.Fatalf("relayed %q, want %q", got.String(), "HELLO GUEST")
			}
			if _, err := a.ClosePort(ctx, &api.ClosePortRequest{StreamId: id}); err != nil {
				t.Fatal(err)
			}
			_, err = a.ReadPort(ctx, &api.ReadPortRequest{StreamId: id})
			wantCode(t, err, codes.NotFound, strconv.Itoa(int(id)))
		})
	}
}

func TestService_PortForwardErrors(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	// A port nothing listens on: bind one, note it, close it.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := uint32(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
		code codes.Code
		says string
	}{
		{"port 0", func(ctx context.Context) error {
			_, err := a.OpenPort(ctx, &api.OpenPortRequest{Port: 0})
			return err
		}, codes.InvalidArgument, "port 0"},
		{"port beyond 65535", func(ctx context.Context) error {
			_, err := a.OpenPort(ctx, &api.OpenPortRequest{Port: 70000})
			return err
		}, codes.InvalidArgument, "70000"},
		{"nothing listening", func(ctx context.Context) error {
			_, err := a.OpenPort(ctx, &api.OpenPortRequest{Port: closed})
			return err
		}, codes.Unavailable, strconv.Itoa(int(closed))},
		{"read unknown", func(ctx context.Context) error {
			_, err := a.ReadPort(ctx, &api.ReadPortRequest{StreamId: 99})
			return err
		}, codes.NotFound, "99"},
		{"write unknown", func(ctx context.Context) error {
			_, err := a.WritePort(ctx, &api.WritePortRequest{StreamId: 98, Data: []byte("x")})
			return err
		}, codes.NotFound, "98"},
		{"close unknown", func(ctx context.Context) error {
			_, err := a.ClosePort(ctx, &api.ClosePortRequest{StreamId: 97})
			return err
		}, codes.NotFound, "97"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(ctxTimeout(t)), tc.code, tc.says)
		})
	}
}

// TestService_PortForwardReadCancelled: a read waiting on a silent peer
// ends when the call's deadline passes, in the agent too: its handler
// returns instead of holding a goroutine for as long as the peer is silent.
func TestService_PortForwardReadCancelled(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	open, err := a.OpenPort(ctxTimeout(t), &api.OpenPortRequest{Port: uint32(l.Addr().(*net.TCPAddr).Port)})
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := a.ReadPort(ctx, &api.ReadPortRequest{StreamId: open.StreamId}); err == nil {
		t.Fatal("a read from a silent peer returned without an error")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if started, finished := CallCounts(); started == finished {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the agent still runs %d calls 5 s after the read's deadline", started-finished)
		}
	}
}
