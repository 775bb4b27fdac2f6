package cloudhypervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// vmmEvent is one record of cloud-hypervisor's --event-monitor stream: JSON
// objects (pretty-printed, one after another), e.g.
// {"timestamp": {...}, "source": "vm", "event": "rebooting", "properties": null}.
type vmmEvent struct {
	Source string `json:"source"`
	Event  string `json:"event"`
}

// guestDeath says why an event means the VM is dead, or "" when it does not.
// Cloud Hypervisor restarts a guest that resets (reboot, or panic with
// panic=-1) and carries on; a restarted guest has lost every container of
// the pod, so the driver ends the VM instead, as QEMU's -no-reboot does.
func guestDeath(e vmmEvent) string {
	switch {
	case e.Source == "vm" && e.Event == "rebooting":
		return "the guest rebooted or panicked (Cloud Hypervisor would restart it; podvm stops the VM instead)"
	case e.Source == "guest" && e.Event == "panic":
		return "the guest kernel panicked (pvpanic)"
	}
	return ""
}

// watchEvents reads the event stream until it ends (the VMM exited) or r is
// closed (the VM is being stopped). Each event is appended as one line to
// logPath; the first event that means the guest is gone is sent on dead,
// which must have room for it.
func watchEvents(r io.ReadCloser, logPath string, dead chan<- string) {
	defer r.Close()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		logFile = nil // the stream is still watched; only its record is lost
	} else {
		defer logFile.Close()
	}
	record := func(b []byte) {
		if logFile != nil {
			logFile.Write(append(b, '\n'))
		}
	}
	dec := json.NewDecoder(r)
	sent := false
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				record([]byte(fmt.Sprintf("podvm: event stream not understood (%v); ignoring the rest", err)))
				io.Copy(io.Discard, r) // keep the pipe drained: the VMM must never block on it
			}
			return
		}
		var compact bytes.Buffer
		if json.Compact(&compact, raw) == nil {
			record(compact.Bytes())
		}
		var e vmmEvent
		if json.Unmarshal(raw, &e) != nil {
			continue
		}
		if why := guestDeath(e); why != "" && !sent {
			dead <- why
			sent = true
		}
	}
}
