package task

import (
	"context"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/sandbox"
)

func (s *Service) send(evt any) {
	select {
	case s.events <- evt:
	case <-s.ctx.Done():
	}
}

// forwardEvents publishes in order, like the runc shim: one queue, so a
// TaskOOM sent before a TaskExit reaches containerd before it.
func (s *Service) forwardEvents() {
	for e := range s.events {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		if err := s.publisher.Publish(ctx, runtime.GetTopic(e), e); err != nil {
			log.G(ctx).WithError(err).Error("publish event")
		}
		cancel()
	}
}

// forwardOOMEvents keeps one GetOOMEvent call pending and publishes each
// OOM kill the guest reports, until the VM is gone.
func (s *Service) forwardOOMEvents(sb *sandbox.Sandbox) {
	for {
		ev, err := sb.Agent.GetOOMEvent(s.ctx, &api.GetOOMEventRequest{})
		select {
		case <-sb.Done():
			return
		default:
		}
		if err != nil {
			log.G(s.ctx).WithError(err).Debug("GetOOMEvent")
			select {
			case <-sb.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.sendOOM(ev.ContainerId)
	}
}

// sendOOM publishes TaskOOM for a container once.
func (s *Service) sendOOM(containerID string) {
	s.mu.Lock()
	dup := s.oomReported[containerID]
	s.oomReported[containerID] = true
	s.mu.Unlock()
	if !dup {
		s.send(&eventstypes.TaskOOM{ContainerID: containerID})
	}
}
