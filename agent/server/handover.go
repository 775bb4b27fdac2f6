package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
)

// Handover runs Config.Handover: a clone of a template becomes a VM of its
// own (docs/factory.md). The connection it came on stays open; the next
// one must prove the new secret.
func (s *Service) Handover(ctx context.Context, req *api.HandoverRequest) (*api.Empty, error) {
	if s.cfg.Handover == nil {
		return nil, fmt.Errorf("handover: this agent cannot be re-keyed: %w", errdefs.ErrNotImplemented)
	}
	if err := s.cfg.Handover(ctx, req.Entropy); err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	log.G(ctx).Info("handed over: random generator reseeded, agent secret replaced")
	return &api.Empty{}, nil
}
