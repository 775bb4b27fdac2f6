// Package agentclient is the shim's side of the agent channel: it connects to
// podvm-agent through whatever dialer the hypervisor driver provides, waits
// for the guest to boot, and exposes the AgentService as a ttrpc client.
package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// Dialer opens one connection to the agent; it may fail while the guest boots.
type Dialer func(ctx context.Context) (net.Conn, error)

// Client is a connected agent.
type Client struct {
	api.AgentServiceService
	ttrpc *ttrpc.Client
	// Details is what the agent reported when the connection was made.
	Details *api.GuestDetailsResponse
	// ReadyAt is when the first GuestDetails call succeeded (host clock).
	ReadyAt time.Time

	closing  atomic.Bool
	lost     chan struct{}
	lostOnce sync.Once
	onHang   atomic.Pointer[func(method string)]
}

// OnHang sets a function called when a bounded call gets no answer within
// CallTimeout, before the call fails: the place to save what the guest's
// console shows (the agent reports its own state there, see
// agent/server's slow-call report) while the VM still runs.
func (c *Client) OnHang(hook func(method string)) { c.onHang.Store(&hook) }

// CallTimeout bounds every call that answers at once in a healthy guest
// (all but the ones that wait for a process, its output or an OOM kill),
// unless the caller's context ends earlier: a hung or hostile guest must
// not hang the shim, and with it containerd's calls. It is generous
// because runc runs under TCG on a loaded host. (A variable for tests.)
var CallTimeout = time.Minute

// boundCalls applies CallTimeout to every call but the waiting ones
// (api.Waits). A call that runs out of it is reported to the hang hook
// first, while the guest is still there to be looked at.
func (c *Client) boundCalls(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	if api.Waits(method) {
		return invoker(ctx, req, resp)
	}
	// Also under a caller's later deadline (containerd passes the CRI
	// client's, minutes away): the bound is what turns a guest that never
	// answers into an error naming the call.
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if err := invoker(ctx, req, resp); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			if hook := c.onHang.Load(); hook != nil {
				(*hook)(method)
			}
			return fmt.Errorf("agent %s: no answer within %s or the caller's deadline: %w", method, CallTimeout, err)
		}
		return err
	}
	return nil
}

// retryInterval is short because the guest boots in about a second under TCG
// and far faster under KVM: a long interval would dominate the start time.
const retryInterval = 10 * time.Millisecond

// Connect dials until the agent answers GuestDetails, the timeout passes, or
// vmDone closes (the VMM died: waiting longer is pointless).
func Connect(ctx context.Context, dial Dialer, timeout time.Duration, vmDone <-chan struct{}) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-vmDone:
			cancel()
		case <-ctx.Done():
		}
	}()

	var lastErr error
	for attempt := 1; ; attempt++ {
		c, err := connectOnce(ctx, dial)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, contract.ErrAuthFailed) {
			// The agent refused the VM's secret: no retry will change it.
			return nil, fmt.Errorf("connect to agent (attempt %d): %w", attempt, err)
		}
		lastErr = err
		select {
		case <-vmDone:
			return nil, fmt.Errorf("the VM exited before its agent answered (attempt %d: %w)", attempt, lastErr)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("agent did not answer within %s (runtime.agent_timeout; last error: %w)", timeout, lastErr)
			}
			return nil, fmt.Errorf("connect to agent: %w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(retryInterval):
		}
	}
}

func connectOnce(ctx context.Context, dial Dialer) (*Client, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	c := &Client{lost: make(chan struct{})}
	// ttrpc calls this when the connection ends, whoever ended it.
	onClose := func() {
		if !c.closing.Load() {
			c.lostOnce.Do(func() { close(c.lost) })
		}
	}
	c.ttrpc = ttrpc.NewClient(conn, ttrpc.WithOnClose(onClose), ttrpc.WithUnaryClientInterceptor(c.boundCalls))
	c.AgentServiceService = api.NewAgentServiceClient(c.ttrpc)
	details, err := c.GuestDetails(ctx, &api.GuestDetailsRequest{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("agent GuestDetails: %w", err)
	}
	c.Details, c.ReadyAt = details, time.Now()
	return c, nil
}

// Close drops the connection; calls in flight fail. Lost stays open.
func (c *Client) Close() error {
	c.closing.Store(true)
	return c.ttrpc.Close()
}

// Lost is closed when the connection ended without Close: the guest end
// went away, or sent what ttrpc cannot frame. Every call then fails.
func (c *Client) Lost() <-chan struct{} { return c.lost }

// WarmRuntime asks the agent on conn, an admitted connection that no
// session uses, to run a throwaway container through the OCI runtime name
// (api WarmRuntime), and closes conn. It is for a VM nobody waits on yet:
// a cached VM before it counts as ready.
func WarmRuntime(ctx context.Context, conn net.Conn, name string) error {
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if _, err := api.NewAgentServiceClient(c).WarmRuntime(ctx, &api.WarmRuntimeRequest{OciRuntime: name}); err != nil {
		return fmt.Errorf("warm the guest's OCI runtime %q: %w", name, err)
	}
	return nil
}
