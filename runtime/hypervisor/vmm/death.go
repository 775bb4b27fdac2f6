package vmm

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

// dyingGrace is how long an error waits for the VMM to be reaped: an error
// seen on a socket often means the VMM is exiting right now.
const dyingGrace = 100 * time.Millisecond

// helpers are the VMM's helper processes, each nil if not started.
type helpers struct {
	fsd    *virtiofsd.Daemon
	vsockd *childproc.Process
}

// supervise waits for the first of: the VMM exiting, a helper exiting,
// the guest gone (guestGone). Unless a Stop asked for it, that is the VM's
// death: record why, close Done, and kill what is left, which is useless
// now.
func (m *Machine) supervise(proc *childproc.Process, h helpers, guestGone <-chan string) {
	fsd := h.fsd
	var fsdDone, vsockdDone <-chan struct{}
	if fsd != nil {
		fsdDone = fsd.Done()
	}
	if h.vsockd != nil {
		vsockdDone = h.vsockd.Done()
	}
	var reason error
	select {
	case <-proc.Done():
		reason = m.vmmExitReason(proc)
	case <-fsdDone:
		// virtiofsd exits by itself when its VMM goes; unless it was
		// killed, give the VMM a moment: if it is dying too, that is the
		// cause.
		if !fsd.Killed() && exitedWithin(proc, dyingGrace) {
			reason = m.vmmExitReason(proc)
		} else {
			reason = fsd.ExitReason("the guest lost its shared directory, so the VM is stopped")
		}
	case <-vsockdDone:
		// It never exits by itself, not even when its VMM goes.
		reason = h.vsockd.ExitReason(LogTailLines, "the guest lost its agent channel, so the VM is stopped")
	case why := <-guestGone:
		reason = m.withConsoleTail(fmt.Errorf("%s: %s", proc.Name(), why))
	}
	m.mu.Lock()
	requested := m.stopping
	if !requested && m.exitErr == nil {
		m.exitErr = reason
	}
	m.mu.Unlock()
	m.closeDone()
	if !requested {
		proc.Kill()
		if fsd != nil {
			fsd.Stop(context.Background())
		}
		if h.vsockd != nil {
			h.vsockd.Kill()
		}
	}
}

// Failure adds what the processes said to a start error. If the VMM or a
// helper died, their exit reasons say more than the symptom:
// vhost-device-vsock's first (it outlives its VMM, so its death is a
// cause), then the VMM's, since virtiofsd exits whenever its VMM does.
func (m *Machine) Failure(err error) error {
	m.mu.Lock()
	proc, fsd, vsockd := m.vmm, m.fsd, m.vsockd
	m.mu.Unlock()
	if vsockd != nil && vsockd.Exited() {
		return fmt.Errorf("%w: %w", err, vsockd.ExitReason(LogTailLines))
	}
	if proc != nil && exitedWithin(proc, dyingGrace) {
		return fmt.Errorf("%w: %w", err, m.vmmExitReason(proc))
	}
	if fsd != nil {
		select {
		case <-fsd.Done():
			return fmt.Errorf("%w: %w", err, fsd.ExitReason())
		default:
		}
	}
	if tail := childproc.TailLines(m.Path(m.spec.LogName), LogTailLines); tail != "" {
		return fmt.Errorf("%w; last lines of %s: %s", err, m.spec.LogName, tail)
	}
	return err
}

// vmmExitReason explains the VMM's exit with the tails of its log and of
// the guest console.
func (m *Machine) vmmExitReason(proc *childproc.Process) error {
	var notes []string
	if proc.WaitStatus() == "exit status 0" && m.spec.CleanExitNote != "" {
		notes = append(notes, m.spec.CleanExitNote)
	}
	m.drainConsole()
	return m.withConsoleTail(proc.ExitReason(LogTailLines, notes...))
}

func (m *Machine) withConsoleTail(err error) error {
	if tail := childproc.TailLines(m.Path(m.spec.ConsoleName), LogTailLines); tail != "" {
		return fmt.Errorf("%w; last lines of %s: %s", err, m.spec.ConsoleName, tail)
	}
	return err
}

// exitedWithin waits up to d for the process to be reaped.
func exitedWithin(p *childproc.Process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.Done():
		return true
	case <-t.C:
		return false
	}
}

// notListening reports a control socket that is not there yet.
func notListening(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}
