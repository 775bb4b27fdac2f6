package sandbox

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/agentclient"
)

// dialCounter is a fakeVM whose first failFirst dials fail with an
// authentication error (no retry within one Connect).
type dialCounter struct {
	*fakeVM
	dials     atomic.Int32
	failFirst int32
}

func (v *dialCounter) DialAgent(ctx context.Context) (net.Conn, error) {
	if v.dials.Add(1) <= v.failFirst {
		return nil, fmt.Errorf("fake: %w", contract.ErrAuthFailed)
	}
	return v.fakeVM.DialAgent(ctx)
}

// connectThroughEarly starts a sandbox's early connection to a fake VM
// whose first failFirst dials fail, then connects as initGuest does.
func connectThroughEarly(t *testing.T, failFirst int32) (*Sandbox, *dialCounter, *agentclient.Client) {
	t.Helper()
	vm := &dialCounter{fakeVM: &fakeVM{done: make(chan struct{})}, failFirst: failFirst}
	s := &Sandbox{ID: "early", vm: vm}
	s.early = connectEarly(context.Background(), vm)
	c, err := s.connectAgent(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, vm, c
}

func TestConnectAgentTakesTheEarlyConnection(t *testing.T) {
	s, vm, c := connectThroughEarly(t, 0)
	if c.Details.GetAgentVersion() != "fake" || c.ReadyAt.IsZero() {
		t.Errorf("the early connection did not ask GuestDetails: %+v", c.Details)
	}
	if n := vm.dials.Load(); n != 1 {
		t.Errorf("%d dials; the early connection should have been the only one", n)
	}
	if s.early != nil {
		t.Error("the early connection is still pending after it was taken")
	}
}

func TestConnectAgentConnectsAgainAfterAFailedEarlyConnection(t *testing.T) {
	_, vm, _ := connectThroughEarly(t, 1)
	if n := vm.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (the failed early one, then the sandbox's own)", n)
	}
}
