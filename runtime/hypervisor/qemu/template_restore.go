package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api/contract"
)

// handoverEntropy is how many random bytes a clone's agent is given to
// reseed the guest's generator with.
const handoverEntropy = 64

// skipHandover leaves a clone with the template's identity and secret:
// tests set it to show what the hand-over changes.
var skipHandover = false

// restore is a clone's part of boot once QMP answers: load the template's
// device state from the inherited fd, wait until the guest runs, then hand
// the VM over (Handover, template_handover.go) so that it admits only
// the holder of own, its own secret.
func (v *VM) restore(ctx context.Context, qmp *qmpClient, own []byte) error {
	var pid int
	if pids := v.Pids(); len(pids) > 0 {
		pid = pids[0]
	}
	marks := newRestoreMarks(v.Info().StartedAt, pid)
	marks.mark("qmp")
	if err := ignoreSharedRAM(ctx, qmp); err != nil {
		return v.Machine.Failure(err)
	}
	uri := "fd:" + strconv.Itoa(v.launchCopy().IncomingFD)
	if err := qmp.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return v.Machine.Failure(fmt.Errorf("restore VM template %s: %w", v.tpl.dir, err))
	}
	marks.mark("load")
	if err := v.resume(ctx, qmp); err != nil {
		return err
	}
	marks.mark("running")
	if skipHandover {
		return nil
	}
	if err := v.handover(ctx, marks); err != nil {
		return v.Machine.Failure(fmt.Errorf("hand over the clone of VM template %s: %w", v.tpl.dir, err))
	}
	v.mu.Lock()
	v.launch.Secret = own
	v.mu.Unlock()
	marks.log(ctx, v.cfg.ID)
	return nil
}

// resume waits until the restored guest runs, resuming it if it was
// restored paused.
func (v *VM) resume(ctx context.Context, qmp *qmpClient) error {
	for {
		st, err := qmp.QueryStatus(ctx)
		if err != nil {
			return v.Machine.Failure(fmt.Errorf("query-status while restoring VM template %s: %w", v.tpl.dir, err))
		}
		if st.Running {
			break
		}
		switch st.Status {
		case "inmigrate":
		case "paused":
			// Restored as saved: the template was stopped before it was saved.
			if err := qmp.Execute(ctx, "cont", nil, nil); err != nil {
				return v.Machine.Failure(fmt.Errorf("resume the clone of VM template %s: %w", v.tpl.dir, err))
			}
		default:
			return v.Machine.Failure(fmt.Errorf("restoring VM template %s: guest is %q, not running (see %s)", v.tpl.dir, st.Status, qemuLogName))
		}
		select {
		case <-ctx.Done():
			return v.Machine.Failure(fmt.Errorf("restoring VM template %s: %w", v.tpl.dir, ctx.Err()))
		case <-v.Done():
			return v.Machine.Failure(fmt.Errorf("QEMU exited while restoring VM template %s", v.tpl.dir))
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// restoreMarks are when a clone's start passed each step (host clock)
// and how much CPU its QEMU had used by then, logged at debug level to
// show where a clone's start goes and whether QEMU was busy or waiting
// (docs/factory.md section 7). The first mark is QEMU's spawn.
type restoreMarks struct {
	pid   int
	steps []restoreStep
}

type restoreStep struct {
	name string
	at   time.Time
	cpu  time.Duration
}

func newRestoreMarks(spawned time.Time, pid int) *restoreMarks {
	return &restoreMarks{pid: pid, steps: []restoreStep{{name: "spawn", at: spawned}}}
}

// mark ends step name (from the previous mark to now).
func (m *restoreMarks) mark(name string) {
	m.steps = append(m.steps, restoreStep{name: name, at: time.Now(), cpu: cpuTime(m.pid)})
}

func (m *restoreMarks) log(ctx context.Context, id string) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	f := log.Fields{"sandbox": id}
	for i := 1; i < len(m.steps); i++ {
		s, prev := m.steps[i], m.steps[i-1]
		f[s.name+"_ms"] = ms(s.at.Sub(prev.at))
		f[s.name+"_qemu_cpu_ms"] = ms(s.cpu - prev.cpu)
	}
	last := m.steps[len(m.steps)-1]
	f["total_ms"], f["total_qemu_cpu_ms"] = ms(last.at.Sub(m.steps[0].at)), ms(last.cpu)
	log.G(ctx).WithFields(f).Debug("clone restored")
}

// cpuTime is the CPU time process pid's threads have used (0 if it
// cannot be read): schedstat's run time, in nanoseconds.
func cpuTime(pid int) time.Duration {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				sum += time.Duration(ns)
			}
		}
	}
	return sum
}

// dialAgentReady dials the agent until it admits the host, the VM dies or
// ctx ends. A refused secret ends it at once.
func (v *VM) dialAgentReady(ctx context.Context) (net.Conn, error) {
	for {
		conn, err := v.dialAgent(ctx)
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, contract.ErrAuthFailed) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the agent: %w (last: %v)", ctx.Err(), err)
		case <-v.Done():
			return nil, fmt.Errorf("the VM exited before its agent answered (last: %v)", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
