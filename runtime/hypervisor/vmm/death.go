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

// supervise waits for the first of: the VMM exiting, virtiofsd exiting,
// the guest gone (guestGone). Unless a Stop asked for it, that is the VM's
// death: record why, close Done, and kill what is left, which is useless
// now.
func (m *Machine) supervise(proc *childproc.Process, fsd *virtiofsd.Daemon, guestGone <-chan string) {
	var fsdDone <-chan struct{}
	if fsd != nil {
		fsdDone = fsd.Done()
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
	}
}

// Failure adds what the processes said to a start error. If the VMM or
// virtiofsd died, their exit reasons say more than the symptom; the VMM's
// first, since virtiofsd exits whenever its VMM does.
func (m *Machine) Failure(err error) error {
	m.mu.Lock()
	proc, fsd := m.vmm, m.fsd
	m.mu.Unlock()
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
