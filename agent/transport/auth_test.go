package transport

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

func testSecret(t *testing.T) []byte {
	t.Helper()
	s, err := contract.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// counting is an agent that counts the calls its handlers run.
type counting struct {
	api.AgentServiceService
	calls atomic.Int32
}

func (c *counting) GuestDetails(context.Context, *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	c.calls.Add(1)
	return &api.GuestDetailsResponse{Transport: "unix"}, nil
}

func (c *counting) ExecProcess(context.Context, *api.ExecProcessRequest) (*api.Empty, error) {
	c.calls.Add(1)
	return &api.Empty{}, nil
}

// serveUnix serves a counting agent through Listen on a unix socket.
func serveUnix(t *testing.T, secret []byte) (string, *counting) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, _, err := Listen(context.Background(), "unix:"+path, secret)
	if err != nil {
		t.Fatal(err)
	}
	return path, serveCounting(t, l)
}

// serveCounting serves a counting agent on l until the test ends.
func serveCounting(t *testing.T, l net.Listener) *counting {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	svc := &counting{}
	api.RegisterAgentServiceService(srv, svc)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return svc
}

// dial connects and, if secret is not nil, authenticates with it.
func dial(t *testing.T, path string, secret []byte) (net.Conn, error) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if secret == nil {
		return c, nil
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	return c, contract.HostAuth(c, secret, Unix)
}

// caller returns a function that tries GuestDetails and ExecProcess on c
// (one ttrpc client per conn: two would race for its replies).
func caller(c net.Conn) func() error {
	client := api.NewAgentServiceClient(ttrpc.NewClient(c))
	return func() error { return call(client) }
}

func call(client api.AgentServiceService) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err1 := client.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "c", ExecId: "e"})
	_, err2 := client.GuestDetails(ctx, &api.GuestDetailsRequest{})
	return errors.Join(err1, err2)
}

// A connection without the secret, or with a wrong one, gets no call
// served: the handlers never run.
func TestNoCallWithoutSecret(t *testing.T) {
	secret := testSecret(t)
	path, svc := serveUnix(t, secret)
	for _, tc := range []struct {
		name   string
		secret []byte
	}{{"no secret", nil}, {"wrong secret", testSecret(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(t, path, tc.secret)
			if tc.secret != nil && !errors.Is(err, contract.ErrAuthFailed) {
				t.Errorf("HostAuth with a wrong secret: %v, want ErrAuthFailed", err)
			}
			if err := caller(c)(); err == nil {
				t.Error("a call was answered")
			}
			if n := svc.calls.Load(); n != 0 {
				t.Fatalf("handlers ran %d times for a host without the secret", n)
			}
		})
	}
	c, err := dial(t, path, secret)
	if err != nil {
		t.Fatalf("HostAuth with the secret: %v", err)
	}
	if err := caller(c)(); err != nil {
		t.Fatalf("authenticated calls: %v", err)
	}
	if n := svc.calls.Load(); n != 2 {
		t.Fatalf("handlers ran %d times, want 2", n)
	}
}

// An unauthenticated connection does not disturb the session; a new
// authenticated one replaces it.
func TestOneSessionAtATime(t *testing.T) {
	secret := testSecret(t)
	path, _ := serveUnix(t, secret)
	conn, err := dial(t, path, secret)
	if err != nil {
		t.Fatal(err)
	}
	first := caller(conn)
	if err := first(); err != nil {
		t.Fatal(err)
	}
	bad, _ := dial(t, path, testSecret(t))
	caller(bad)()
	dial(t, path, nil) // never answers: must not hold up anyone
	if err := first(); err != nil {
		t.Fatalf("session after an unauthenticated connection: %v", err)
	}
	conn, err = dial(t, path, secret)
	if err != nil {
		t.Fatalf("second session while an unanswered connection waits: %v", err)
	}
	if err := caller(conn)(); err != nil {
		t.Fatal(err)
	}
	if err := first(); err == nil {
		t.Fatal("the replaced session still serves")
	}
}

// Failures are counted, and reported at most once per failureLogEvery.
func TestAuthFailuresRateLimited(t *testing.T) {
	a, err := newAuthenticator(testSecret(t), Unix)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	a.log = &log
	for range 5 {
		a.failed("peer", contract.ErrAuthFailed)
	}
	if a.failures.Load() != 5 || strings.Count(log.String(), "\n") != 1 {
		t.Fatalf("5 failures: counted %d, logged %q", a.failures.Load(), log.String())
	}
	a.lastLog = time.Now().Add(-failureLogEvery)
	a.failed("peer", contract.ErrAuthFailed)
	if !strings.Contains(log.String(), "6 failed authentications so far, 4 not reported") {
		t.Fatalf("log %q", log.String())
	}
	if _, err := newAuthenticator(make([]byte, 8), Unix); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

// On a serial port the check follows the handshake: a host without the
// secret gets no call served, and the port is reopened for the next host.
func TestSerialListenerAuth(t *testing.T) {
	secret := testSecret(t)
	ports := newFakePorts()
	l := NewSerialListener("fake", ports.open)
	a, err := newAuthenticator(secret, contract.TransportSerial)
	if err != nil {
		t.Fatal(err)
	}
	a.log = &strings.Builder{}
	l.auth = a
	svc := serveCounting(t, l)

	bad := ports.nextHost(t)
	if err := caller(bad)(); err == nil {
		t.Error("a call without the secret was answered")
	}
	if n := svc.calls.Load(); n != 0 {
		t.Fatalf("handlers ran %d times for a host without the secret", n)
	}
	good := ports.nextHost(t)
	good.SetDeadline(time.Now().Add(5 * time.Second))
	if err := contract.HostAuth(good, secret, contract.TransportSerial); err != nil {
		t.Fatal(err)
	}
	good.SetDeadline(time.Time{})
	if err := caller(good)(); err != nil {
		t.Fatal(err)
	}
}
