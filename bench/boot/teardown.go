package boot

import (
	"time"

	"github.com/podvm/podvm/bench/result"
)

// The shim's marks of a `--rm` teardown (host clock), from its "container
// deleted from the pod VM", "pod VM destroyed" and "shim shut down" lines.
const (
	MarkDeleteBegin      = "delete_begin"
	MarkContainerRemoved = "container_removed"
	MarkDeleteAnswered   = "delete_answered"
	MarkShutdownBegin    = "shutdown_begin"
	MarkShutdownAnswered = "shutdown_answered"
	MarkDestroyBegin     = "destroy_begin"
	MarkGuestDone        = "guest_done"
	MarkVMStopped        = "vm_stopped"
	MarkNetDone          = "net_done"
	MarkCgroupDone       = "cgroup_done"
	MarkShareDone        = "share_done"
)

// teardownPhases split output_to_exit as ctr waits for it (each from the
// previous to), then the VM's destroy by its steps, wherever it ran: inside
// the Delete or the Shutdown.
var teardownPhases = []phaseDef{
	{"output_to_delete", MarkFirstOutput, MarkDeleteBegin, clockHost},
	{"delete_container", MarkDeleteBegin, MarkContainerRemoved, clockHost},
	{"delete_rest", MarkContainerRemoved, MarkDeleteAnswered, clockHost},
	{"delete_to_shutdown", MarkDeleteAnswered, MarkShutdownBegin, clockHost},
	{"shutdown", MarkShutdownBegin, MarkShutdownAnswered, clockHost},
	{"shutdown_to_exit", MarkShutdownAnswered, MarkExited, clockHost},
	{"destroy_guest", MarkDestroyBegin, MarkGuestDone, clockHost},
	{"destroy_vm_stop", MarkGuestDone, MarkVMStopped, clockHost},
	{"destroy_network", MarkVMStopped, MarkNetDone, clockHost},
	{"destroy_host_cgroup", MarkNetDone, MarkCgroupDone, clockHost},
	{"destroy_share", MarkCgroupDone, MarkShareDone, clockHost},
}

// addTeardownMarks puts the shim's teardown marks of one run into s (ms
// since t0); marks the shim did not log stay out.
func addTeardownMarks(s *result.BootSample, t0 time.Time, marks map[string]time.Time) {
	for name, t := range marks {
		if !t.IsZero() && t.UnixNano() > 0 {
			s.Marks[name] = result.Ms(t.Sub(t0))
		}
	}
}
