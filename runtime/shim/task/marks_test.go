package task

import (
	"strings"
	"testing"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// A guest's mark with a name outside the contract, or a flood of them,
// adds nothing to the shim's log line.
func TestAddGuestMarksTakesOnlyContractNames(t *testing.T) {
	marks := []*api.GuestMark{{Name: contract.MarkStartEnd, BoottimeNs: 7}, {Name: "container", BoottimeNs: 1}, nil}
	for i := 0; i < 1000; i++ {
		marks = append(marks, &api.GuestMark{Name: strings.Repeat("x", i)})
	}
	fields := log.Fields{"container": "c1"}
	addGuestMarks(fields, marks, contract.ContainerMarks)
	if len(fields) != 2 || fields["guest_start_end_ns"] != int64(7) || fields["container"] != "c1" {
		t.Errorf("fields = %v, want container and guest_start_end_ns only", fields)
	}
	// A container's mark on an exec's line is no contract name either.
	fields = log.Fields{"exec": "e1"}
	addGuestMarks(fields, append(marks, &api.GuestMark{Name: contract.MarkExited, BoottimeNs: 9}), contract.ProcessMarks)
	if len(fields) != 2 || fields["guest_exited_ns"] != int64(9) {
		t.Errorf("exec fields = %v, want exec and guest_exited_ns only", fields)
	}
}
