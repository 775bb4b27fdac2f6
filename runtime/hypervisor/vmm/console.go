package vmm

import (
	"fmt"
	"os"
	"time"

	"github.com/podvm/podvm/runtime/internal/caplog"
)

// consoleDrainWait bounds how long a death report waits for the console
// copy to reach the end of what the dead VMM wrote.
const consoleDrainWait = time.Second

// ConsolePipe opens the guest console: a pipe whose write end the VMM
// inherits (its serial port writes there) and which the Machine copies
// into Spec.ConsoleName, capped at Spec.ConsoleMaxBytes (0:
// caplog.DefaultMaxBytes) with one rotation (package caplog). The caller
// closes the write end once the VMM has its copy (or failed to start).
func (m *Machine) ConsolePipe() (*os.File, error) {
	log, err := caplog.Open(m.Path(m.spec.ConsoleName), m.spec.ConsoleMaxBytes, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	w, copier, err := caplog.Pipe(log)
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	m.mu.Lock()
	m.console = copier
	m.mu.Unlock()
	return w, nil
}

// drainConsole waits, at most consoleDrainWait, until the console copy has
// reached the end of what the (dead) VMM wrote, so that the console's tail
// in an exit reason includes the last lines.
func (m *Machine) drainConsole() {
	m.mu.Lock()
	c := m.console
	m.mu.Unlock()
	if c != nil {
		c.Wait(consoleDrainWait)
	}
}
