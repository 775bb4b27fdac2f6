package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// Destroy tells the agent to stop everything, stops the VM, unmounts every
// rootfs and removes the state directory. It is idempotent, and a second
// caller waits for the first one's Destroy to finish. The time each step
// took is logged ("pod VM destroyed").
func (s *Sandbox) Destroy(ctx context.Context) error {
	var errs []error
	s.destroy.Do(func() {
		begin := time.Now()
		s.mu.Lock()
		s.destroying = true
		forward := s.forward
		s.mu.Unlock()
		if forward != nil { // before the agent: its relays use it
			forward.Close()
		}
		s.destroyGuest(ctx)
		guestDone := time.Now()
		if s.vm != nil {
			if err := s.vm.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop VM of sandbox %s: %w", s.ID, err))
			}
		}
		vmDone := time.Now()
		errs = append(errs, s.releaseHost()...)
		log.G(ctx).WithFields(log.Fields{
			"sandbox":  s.ID,
			"guest_ms": ms(guestDone.Sub(begin)), "vm_stop_ms": ms(vmDone.Sub(guestDone)),
			"host_ms": ms(time.Since(vmDone)),
		}).Info("pod VM destroyed")
	})
	return errors.Join(errs...)
}

// destroyGuest asks the agent to remove every container, unless the VM is
// already gone, and closes the agent's channel.
func (s *Sandbox) destroyGuest(ctx context.Context) {
	if s.Agent == nil {
		return
	}
	select {
	case <-s.vm.Done():
	default:
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := s.Agent.DestroySandbox(actx, &api.DestroySandboxRequest{SandboxId: s.ID}); err != nil {
			log.G(ctx).WithError(err).Debug("agent DestroySandbox (the VM is stopped next regardless)")
		}
		cancel()
	}
	s.Agent.Close()
}

// releaseHost undoes the host's side once the VM is stopped: the network,
// the host cgroup, the share and the state directory, then the lock.
func (s *Sandbox) releaseHost() []error {
	var errs []error
	// After the VMM: it holds the taps open until it exits.
	if s.net != nil {
		if err := s.net.Teardown(); err != nil {
			errs = append(errs, fmt.Errorf("tear down the network of sandbox %s: %w", s.ID, err))
		}
	}
	// After the VMM and virtiofsd have been reaped: the kernel removes
	// no cgroup that still holds a process.
	if s.cgroup != nil {
		if err := s.cgroup.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", s.ID, err))
		}
	}
	if err := share.UnmountAndRemove(s.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("clean up sandbox %s: %w", s.ID, err))
	}
	if s.lock != nil {
		s.lock.Close() // after the directory is gone: a sweep finds nothing
	}
	if s.Agent == nil {
		// watch never ran: the VM did not get as far as its agent.
		s.doneOnce()
	}
	return errs
}

// ms is d in milliseconds, for log fields.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
