// Package agentclient is the shim's side of the agent channel: it connects to
// podvm-agent through whatever dialer the hypervisor driver provides, waits
// for the guest to boot, and exposes the AgentService as a ttrpc client.
package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
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
	tc := ttrpc.NewClient(conn)
	svc := api.NewAgentServiceClient(tc)
	details, err := svc.GuestDetails(ctx, &api.GuestDetailsRequest{})
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("agent GuestDetails: %w", err)
	}
	return &Client{AgentServiceService: svc, ttrpc: tc, Details: details, ReadyAt: time.Now()}, nil
}

// Close drops the connection; calls in flight fail.
func (c *Client) Close() error { return c.ttrpc.Close() }
