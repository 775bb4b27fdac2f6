package sandbox

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
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

func TestConnectAgentTakesTheEarlyConnection(t *testing.T) {
	vm := &dialCounter{fakeVM: &fakeVM{done: make(chan struct{})}}
	s := &Sandbox{ID: "early", vm: vm}
	s.early = connectEarly(context.Background(), vm)
	c, err := s.connectAgent(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	vm := &dialCounter{fakeVM: &fakeVM{done: make(chan struct{})}, failFirst: 1}
	s := &Sandbox{ID: "early-failed", vm: vm}
	s.early = connectEarly(context.Background(), vm)
	c, err := s.connectAgent(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := vm.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (the failed early one, then the sandbox's own)", n)
	}
}
