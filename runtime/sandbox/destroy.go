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
// rootfs and removes the state directory. It is idempotent.
func (s *Sandbox) Destroy(ctx context.Context) error {
	var errs []error
	s.destroy.Do(func() {
		s.mu.Lock()
		s.destroying = true
		forward := s.forward
		s.mu.Unlock()
		if forward != nil { // before the agent: its relays use it
			forward.Close()
		}
		if s.Agent != nil {
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
		if s.vm != nil {
			if err := s.vm.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop VM of sandbox %s: %w", s.ID, err))
			}
		}
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
	})
	return errors.Join(errs...)
}
