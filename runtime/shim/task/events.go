package task

import (
	"context"
	"math/bits"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
)

// oomPace is the least time between two GetOOMEvent calls: the agent is
// the guest's and may answer at once, forever. Real OOM kills are rare and
// their exits carry the OOM too (waitExit), so 50 a second loses nothing.
const oomPace = 20 * time.Millisecond

// oomSource is the part of the agent the OOM loop asks.
type oomSource interface {
	GetOOMEvent(ctx context.Context, r *api.GetOOMEventRequest) (*api.OOMEvent, error)
}

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
// OOM kill the guest reports for one of this shim's containers, until done
// closes. Calls are paced by oomPace (a second after an error), whatever
// the agent answers.
func (s *Service) forwardOOMEvents(agent oomSource, done <-chan struct{}) {
	var rejected uint64
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-done:
			return
		case <-pace.C:
		}
		ev, err := agent.GetOOMEvent(s.ctx, &api.GetOOMEventRequest{})
		pace.Reset(oomPace)
		if err != nil {
			log.G(s.ctx).WithError(err).Debug("GetOOMEvent")
			pace.Reset(time.Second)
			continue
		}
		if !s.sendOOM(ev.ContainerId) {
			rejected++
			logRejectedOOM(s.ctx, ev.ContainerId, rejected)
		}
	}
}

// logRejectedOOM logs the 1st, 2nd, 4th, 8th, ... OOM event naming no
// container of this shim: a flood must not flood the log too.
func logRejectedOOM(ctx context.Context, id string, n uint64) {
	if bits.OnesCount64(n) != 1 {
		return
	}
	const show = 80
	if len(id) > show {
		id = id[:show] + "..."
	}
	log.G(ctx).WithField("container", id).WithField("rejected", n).
		Warn("the guest reported an OOM kill of a container this shim does not run; ignored")
}

// sendOOM publishes TaskOOM for one of the shim's containers, once; it
// reports false, and keeps nothing, for an id that names none of them.
// The check and the mark are made under s.mu, as forget drops both, so
// oomReported never holds more than the container table.
func (s *Service) sendOOM(containerID string) bool {
	s.mu.Lock()
	if !s.containers.Has(containerID) {
		s.mu.Unlock()
		return false
	}
	dup := s.oomReported[containerID]
	s.oomReported[containerID] = true
	s.mu.Unlock()
	if !dup {
		s.send(&eventstypes.TaskOOM{ContainerID: containerID})
	}
	return true
}
