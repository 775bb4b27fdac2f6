package sandbox

import (
	"context"
	"fmt"
	"os"
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

// logConsoleTail copies the end of the guest console into the shim's log
// when an agent call got no answer: the console file goes with the
// sandbox's state directory, and the agent writes what it was doing there
// (agent/server slowcall.go) before the shim gives up.
func (s *Sandbox) logConsoleTail(method string) {
	path := s.vm.Info().ConsolePath
	tail, err := readTail(path, consoleTailBytes)
	entry := log.L.WithFields(log.Fields{"sandbox": s.ID, "call": method, "console": path})
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
