package sandbox

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/vmtest"
)

// fakeGuest is an agent that answers what sandbox.Create asks.
type fakeGuest struct{ api.AgentServiceService }

func (fakeGuest) GuestDetails(context.Context, *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	return &api.GuestDetailsResponse{AgentVersion: "fake"}, nil
}
func (fakeGuest) CreateSandbox(context.Context, *api.CreateSandboxRequest) (*api.Empty, error) {
	return &api.Empty{}, nil
}
func (fakeGuest) DestroySandbox(context.Context, *api.DestroySandboxRequest) (*api.Empty, error) {
	return &api.Empty{}, nil
}

// fakeVM runs no VMM: its agent is a fakeGuest on a pipe, whose guest end
// the test holds.
type fakeVM struct {
	mu       sync.Mutex
	guestEnd net.Conn
	done     chan struct{}
	stopped  bool
	once     sync.Once
}

func (v *fakeVM) Start(context.Context) error { return nil }
func (v *fakeVM) DialAgent(context.Context) (net.Conn, error) {
	hostEnd, guestEnd := net.Pipe()
	srv, _ := ttrpc.NewServer()
	api.RegisterAgentServiceService(srv, fakeGuest{})
	go srv.Serve(context.Background(), &pipeListener{conns: []net.Conn{guestEnd}, closed: make(chan struct{})})
	v.mu.Lock()
	v.guestEnd = guestEnd
	v.mu.Unlock()
	return hostEnd, nil
}
func (v *fakeVM) Stop(context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	v.once.Do(func() { close(v.done) })
	return nil
}
func (v *fakeVM) Done() <-chan struct{}                        { return v.done }
func (v *fakeVM) ExitError() error                             { return nil }
func (v *fakeVM) Pids() []int                                  { return nil }
func (v *fakeVM) Info() hypervisor.Info                        { return hypervisor.Info{Driver: "fake"} }
func (v *fakeVM) Resize(context.Context, uint32, uint32) error { return hypervisor.ErrNotSupported }

type fakeDriver struct{ vm *fakeVM }

func (d fakeDriver) Name() string                                   { return "fake" }
func (d fakeDriver) Check(context.Context) []hypervisor.CheckResult { return nil }
func (d fakeDriver) Create(context.Context, hypervisor.Config) (hypervisor.VM, error) {
	return d.vm, nil
}

func fakeSandbox(t *testing.T, id string) (*Sandbox, *fakeVM) {
	t.Helper()
	vmtest.NeedRoot(t)
	cfg := config.Default()
	cfg.Runtime.StateDir = t.TempDir()
	vm := &fakeVM{done: make(chan struct{})}
	sb, err := Create(context.Background(), Options{ID: id, Config: cfg, Driver: fakeDriver{vm}, Size: Size{1, 256}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	return sb, vm
}

// TestAgentLost: when the agent's channel closes while the VM runs (the
// agent crashed, hung up, or sent what ttrpc cannot frame), the sandbox
// stops the VM and reports itself dead, with why, so that every task of
// the pod is reported exited instead of waiting for answers forever.
func TestAgentLost(t *testing.T) {
	sb, vm := fakeSandbox(t, "lost")
	vm.mu.Lock()
	vm.guestEnd.Close()
	vm.mu.Unlock()
	select {
	case <-sb.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's channel closed and the sandbox stayed alive")
	}
	if err := sb.ExitError(); err == nil || !strings.Contains(err.Error(), "agent's channel") {
		t.Errorf("ExitError = %v; want the lost agent named", err)
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if !vm.stopped {
		t.Errorf("the VM of a lost agent was not stopped")
	}
}

// TestDestroyIsNotALoss: Destroy closes the channel itself; that is no
// death to report.
func TestDestroyIsNotALoss(t *testing.T) {
	sb, _ := fakeSandbox(t, "destroyed")
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done stayed open after Destroy")
	}
	if err := sb.ExitError(); err != nil {
		t.Errorf("ExitError after Destroy = %v, want nil", err)
	}
}

// pipeListener hands out its connections, then waits to be closed.
type pipeListener struct {
	mu     sync.Mutex
	conns  []net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.conns) > 0 {
		c := l.conns[0]
		l.conns = l.conns[1:]
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }
