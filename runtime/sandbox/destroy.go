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
// caller waits for the first one's Destroy to finish. When each step ended
// is logged ("pod VM destroyed").
func (s *Sandbox) Destroy(ctx context.Context) error { return s.destroyVM(ctx, true) }

// DestroyIdle destroys a VM whose guest has nothing left to end: its last
// container's processes have exited and what they wrote to the share has
// reached the host (a FUSE file is written back when it is closed, and an
// exited process has closed its files), or it is a CRI pod's pause
// container, which writes nothing. It is Destroy without the agent's
// DestroySandbox, which would only run `runc delete --force` of that
// container (a Go-runtime start under TCG, most of Destroy's time) and
// unmount the share, all of it gone with the VM. Whichever of Destroy and
// DestroyIdle comes first decides; the other waits for it.
func (s *Sandbox) DestroyIdle(ctx context.Context) error { return s.destroyVM(ctx, false) }

func (s *Sandbox) destroyVM(ctx context.Context, tellGuest bool) error {
	var errs []error
	s.destroy.Do(func() {
		var m destroyMarks
		m.begin = time.Now()
		s.mu.Lock()
		s.destroying = true
		forward := s.forward
		s.mu.Unlock()
		if forward != nil { // before the agent: its relays use it
			forward.Close()
		}
		s.destroyGuest(ctx, tellGuest)
		m.guest = time.Now()
		if s.vm != nil {
			if err := s.vm.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop VM of sandbox %s: %w", s.ID, err))
			}
		}
		m.vm = time.Now()
		errs = append(errs, s.releaseHost(&m)...)
		log.G(ctx).WithFields(log.Fields{"sandbox": s.ID, "guest_told": tellGuest}).WithFields(m.fields()).Info("pod VM destroyed")
	})
	return errors.Join(errs...)
}

// destroyMarks are when Destroy began and each of its steps ended: the
// guest told (DestroySandbox), the VMM and virtiofsd stopped and reaped,
// the taps removed, the host cgroup removed, the share unmounted and the
// state directory removed. `podvm bench boot` splits teardown with them.
type destroyMarks struct{ begin, guest, vm, net, cgroup, share time.Time }

func (m *destroyMarks) fields() log.Fields {
	return log.Fields{
		"guest_ms": ms(m.guest.Sub(m.begin)), "vm_stop_ms": ms(m.vm.Sub(m.guest)), "host_ms": ms(m.share.Sub(m.vm)),
		"host_destroy_begin_ns": m.begin.UnixNano(), "host_guest_done_ns": m.guest.UnixNano(),
		"host_vm_stopped_ns": m.vm.UnixNano(), "host_net_done_ns": m.net.UnixNano(),
		"host_cgroup_done_ns": m.cgroup.UnixNano(), "host_share_done_ns": m.share.UnixNano(),
	}
}

// destroyGuest asks the agent to remove every container (if tell, and
// unless the VM is already gone), and closes the agent's channel.
func (s *Sandbox) destroyGuest(ctx context.Context, tell bool) {
	if s.Agent == nil {
		return
	}
	if tell && !s.vmGone() {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := s.Agent.DestroySandbox(actx, &api.DestroySandboxRequest{SandboxId: s.ID}); err != nil {
			log.G(ctx).WithError(err).Debug("agent DestroySandbox (the VM is stopped next regardless)")
		}
		cancel()
	}
	s.Agent.Close()
}

// vmGone says whether the VMM has exited or been stopped.
func (s *Sandbox) vmGone() bool {
	select {
	case <-s.vm.Done():
		return true
	default:
		return false
	}
}

// releaseHost undoes the host's side once the VM is stopped: the network,
// the host cgroup, the share and the state directory, then the lock.
func (s *Sandbox) releaseHost(m *destroyMarks) []error {
	var errs []error
	// After the VMM: it holds the taps open until it exits.
	if s.net != nil {
		if err := s.net.Teardown(); err != nil {
			errs = append(errs, fmt.Errorf("tear down the network of sandbox %s: %w", s.ID, err))
		}
	}
	m.net = time.Now()
	// After the VMM and virtiofsd have been reaped: the kernel removes
	// no cgroup that still holds a process.
	if s.cgroup != nil {
		if err := s.cgroup.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", s.ID, err))
		}
	}
	m.cgroup = time.Now()
	if err := share.UnmountAndRemove(s.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("clean up sandbox %s: %w", s.ID, err))
	}
	m.share = time.Now()
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
