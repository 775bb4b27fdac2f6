package sandbox

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// vmFailureDetail explains a dead VM in an error message.
func (s *Sandbox) vmFailureDetail() string {
	select {
	case <-s.vm.Done():
		if err := s.vm.ExitError(); err != nil {
			return fmt.Sprintf("; the VM exited: %v", err)
		}
		return "; the VM exited"
	default:
		return fmt.Sprintf("; guest console log: %s", s.vm.Info().ConsolePath)
	}
}

// consoleTailBytes is how much of the guest console a hung agent call
// copies into the shim's log: enough for the agent's slow-call report
// (goroutines cut at 64 KiB, plus the process list) in most cases.
const consoleTailBytes = 96 << 10

// hangReportInterval is the least time between two hang reports of one
// sandbox. Each copies up to consoleTailBytes of the console and the
// VMM's diagnosis into the shim's log, and a guest decides how many calls
// hang: a flood of them (probes, stats, execs, all bound by
// agentclient.CallTimeout, a minute) must not become a flood of reports in
// containerd's log. One a minute is one per wave of calls that time out
// together, and a guest that stays stuck has nothing new to show sooner.
const hangReportInterval = time.Minute

// hangLimiter lets one hang report of a sandbox through per
// hangReportInterval and counts the others.
type hangLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow says whether a report may be written at now and, if so, how many
// were held back since the last one.
func (h *hangLimiter) allow(now time.Time) (ok bool, suppressed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.last.IsZero() && now.Sub(h.last) < hangReportInterval {
		h.suppressed++
		return false, 0
	}
	h.last, suppressed, h.suppressed = now, h.suppressed, 0
	return true, suppressed
}

// logConsoleTail copies the end of the guest console into the shim's log
// when an agent call got no answer: the console file goes with the
// sandbox's state directory, and the agent writes what it was doing there
// (agent/server slowcall.go) before the shim gives up. At most one report
// per hangReportInterval; the next says how many calls hung unreported.
func (s *Sandbox) logConsoleTail(method string) {
	path := s.vm.Info().ConsolePath
	entry := log.L.WithFields(log.Fields{"sandbox": s.ID, "call": method, "console": path})
	ok, suppressed := s.hangs.allow(time.Now())
	if !ok {
		entry.Debug("agent call got no answer; hang report held back (one per minute)")
		return
	}
	entry = entry.WithField("hung_calls_not_reported", suppressed)
	tail, err := readConsoleTail(path, consoleTailBytes)
	if err != nil {
		entry.WithError(err).Error("agent call got no answer; the guest console cannot be read")
		return
	}
	entry.Errorf("agent call got no answer; the guest console ends with:\n%s", tail)
	if d, ok := s.vm.(hypervisor.Diagnoser); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		entry.Errorf("agent call got no answer; the VMM says:\n%s", d.Diagnose(ctx))
	}
}

// readConsoleTail returns at most n bytes from the end of the console log
// at path, reaching into its rotation (path.1, see vmm.ConsolePipe) when
// the current file holds less.
func readConsoleTail(path string, n int64) (string, error) {
	tail, err := readTail(path, n)
	if err != nil || int64(len(tail)) >= n {
		return tail, err
	}
	older, err := readTail(path+".1", n-int64(len(tail)))
	if err != nil {
		return tail, nil // no rotation yet
	}
	return older + tail, nil
}

// readTail returns at most n bytes from the end of the file at path.
func readTail(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "", err
	}
	return string(buf), nil
}

// agentLostGrace is how long a lost agent channel waits for the VMM's own
// death to be seen: when QEMU dies its end of the channel closes first,
// and its exit status says more than the lost channel.
const agentLostGrace = 500 * time.Millisecond

// watch closes Done when the VM dies, or stops the VM when the agent's
// channel is lost while the VM runs: a VM whose agent cannot be reached
// can run nothing more, and its containers must be reported exited rather
// than wait for an answer that will never come.
func (s *Sandbox) watch(logger *log.Entry) {
	var why error
	select {
	case <-s.vm.Done():
		why = s.vm.ExitError()
	case <-s.Agent.Lost():
		select {
		case <-s.vm.Done():
			why = s.vm.ExitError()
		case <-time.After(agentLostGrace):
			s.mu.Lock()
			requested := s.destroying
			s.mu.Unlock()
			if !requested {
				why = fmt.Errorf("the agent's channel to sandbox %s closed while its VM ran (the guest agent crashed, hung up or sent garbage); the VM is stopped", s.ID)
				logger.WithError(why).Error("lost the pod VM's agent")
				if err := s.vm.Stop(context.Background()); err != nil {
					logger.WithError(err).Warn("stop the VM of a lost agent")
				}
			} else {
				<-s.vm.Done()
				why = s.vm.ExitError()
			}
		}
	}
	s.mu.Lock()
	if why != nil && !s.destroying {
		s.exitErr = why
	}
	s.mu.Unlock()
	s.doneOnce()
}
