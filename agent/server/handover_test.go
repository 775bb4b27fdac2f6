package server

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/podvm/podvm/agent/api"
)

// Handover runs the configured hand-over with the host's entropy, and is
// refused where there is none (off the guest).
func TestHandover(t *testing.T) {
	ctx := context.Background()
	if _, err := New(Config{}).Handover(ctx, &api.HandoverRequest{}); !errdefs.IsNotImplemented(err) {
		t.Errorf("Handover without Config.Handover: %v, want not implemented", err)
	}
	var got []byte
	svc := New(Config{Handover: func(_ context.Context, entropy []byte) error { got = entropy; return nil }})
	if _, err := svc.Handover(ctx, &api.HandoverRequest{Entropy: []byte("seed")}); err != nil || string(got) != "seed" {
		t.Errorf("Handover: %v, entropy %q", err, got)
	}
	failing := New(Config{Handover: func(context.Context, []byte) error { return errors.New("no fw_cfg") }})
	if _, err := failing.Handover(ctx, &api.HandoverRequest{}); err == nil {
		t.Error("a failed hand-over was reported as done")
	}
}
