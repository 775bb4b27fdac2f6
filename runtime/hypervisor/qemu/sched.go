package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// vmmSlice is the CPU time slice a TCG QEMU's threads ask the host scheduler for
// (EEVDF's per-task slice, sched_attr.sched_runtime, Linux 6.12 and later;
// the default is 0.75 ms x (1 + log2 CPUs)). Under TCG a vCPU thread runs
// translated guest code out of caches of its own (translation blocks,
// soft TLB, guest RAM); ten of them sharing two cores at the default slice
// (1.4 ms here) evict each other's working set at every switch, and ten
// pods' guests spent twice the vCPU time one pod's does alone
// (docs/benchmarks.md, "ten pods at once"). A long slice switches
// vCPUs less often. SCHED_BATCH keeps a woken QEMU thread from preempting
// a running one; host processes that are not QEMU keep the default slice
// and their earlier deadlines, so they still run first.
const vmmSlice = 20 * time.Millisecond

// setBatchSlice gives every thread of process pid SCHED_BATCH and
// vmmSlice. Threads started later inherit the policy; a kernel without
// per-task slices keeps its default slice (the policy is still set).
func setBatchSlice(pid int) error {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		attr := &unix.SchedAttr{Policy: unix.SCHED_BATCH, Runtime: uint64(vmmSlice)}
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil && err != unix.ESRCH {
			return fmt.Errorf("sched_setattr of thread %d: %w", tid, err)
		}
	}
	return nil
}
