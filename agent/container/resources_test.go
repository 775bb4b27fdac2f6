package container

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestOutsideCPUQuota: what start forks for runc runs under SCHED_RR (so
// runc's init is not throttled by the container's cpu.max), for another
// runtime under SCHED_OTHER, and the calling thread is SCHED_OTHER again
// afterwards.
func TestOutsideCPUQuota(t *testing.T) {
	saved := realtimeUngrouped
	realtimeUngrouped = func() bool { return true }
	t.Cleanup(func() { realtimeUngrouped = saved })
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := setScheduler(unix.SCHED_RR, 1); err != nil {
		t.Skipf("cannot set a real-time policy here: %v", err)
	}
	if err := setScheduler(unix.SCHED_NORMAL, 0); err != nil {
		t.Fatal(err)
	}

	var out []byte
	err := outsideCPUQuota("/usr/bin/runc", func() error {
		var err error
		// Field 41 of /proc/<pid>/stat is the policy (the command's
		// name, field 2, has no space).
		out, err = exec.Command("sh", "-c", "cut -d' ' -f41 /proc/$$/stat").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "2" {
		t.Errorf("a process started by outsideCPUQuota's start has policy %q, want 2 (SCHED_RR)", got)
	}
	if err := outsideCPUQuota("/usr/bin/crun", func() error {
		var err error
		out, err = exec.Command("sh", "-c", "cut -d' ' -f41 /proc/$$/stat").Output()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "0" {
		t.Errorf("crun, which ignores process.scheduler, was started under policy %q, want 0 (SCHED_OTHER)", got)
	}
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Policy != unix.SCHED_NORMAL {
		t.Errorf("the calling thread has policy %d afterwards, want SCHED_OTHER", attr.Policy)
	}
}

// TestResetScheduler: a process without a policy of its own is set back to
// SCHED_OTHER by the runtime's init; one with a policy keeps it; nothing
// is added where no real-time policy is used.
func TestResetScheduler(t *testing.T) {
	saved := realtimeUngrouped
	t.Cleanup(func() { realtimeUngrouped = saved })

	realtimeUngrouped = func() bool { return true }
	var p specs.Process
	resetScheduler(&p)
	if p.Scheduler == nil || p.Scheduler.Policy != specs.SchedOther || p.Scheduler.Nice != 0 {
		t.Errorf("scheduler %+v, want SCHED_OTHER nice 0", p.Scheduler)
	}
	own := specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedBatch, Nice: 5}}
	resetScheduler(&own)
	if own.Scheduler.Policy != specs.SchedBatch || own.Scheduler.Nice != 5 {
		t.Errorf("the process's own scheduler became %+v", own.Scheduler)
	}

	realtimeUngrouped = func() bool { return false }
	var plain specs.Process
	resetScheduler(&plain)
	if plain.Scheduler != nil {
		t.Errorf("scheduler %+v added without a real-time start", plain.Scheduler)
	}
}
