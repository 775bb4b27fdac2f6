package qemu

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSetBatchSlice(t *testing.T) {
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Skipf("no sleep to run: %v", err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	if err := setBatchSlice(c.Process.Pid); err != nil {
		t.Fatal(err)
	}
	a, err := unix.SchedGetAttr(c.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Policy != unix.SCHED_BATCH {
		t.Errorf("policy %d, want SCHED_BATCH (%d)", a.Policy, unix.SCHED_BATCH)
	}
	// A kernel before 6.12 reports its default slice instead.
	if a.Runtime != uint64(vmmSlice) {
		t.Logf("slice %v, asked for %v (a kernel without per-task slices?)", a.Runtime, vmmSlice)
	}
	if err := setBatchSlice(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
