package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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
	marks := restoreMarks{spawned: v.Info().StartedAt, qmp: time.Now()}
	if err := ignoreSharedRAM(ctx, qmp); err != nil {
		return v.Machine.Failure(err)
	}
	uri := "fd:" + strconv.Itoa(v.launchCopy().IncomingFD)
	if err := qmp.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return v.Machine.Failure(fmt.Errorf("restore VM template %s: %w", v.tpl.dir, err))
	}
	marks.incoming = time.Now()
	if err := v.resume(ctx, qmp); err != nil {
		return err
	}
	marks.running = time.Now()
	if skipHandover {
		return nil
	}
	if err := v.handover(ctx, &marks); err != nil {
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

// restoreMarks are when a clone's start passed each step (host clock),
// logged at debug level to show where a clone's start goes
// (docs/factory.md section 7).
type restoreMarks struct {
	spawned  time.Time // QEMU spawned (Info.StartedAt)
	qmp      time.Time // QMP answered
	incoming time.Time // migrate-incoming returned: device state loaded
	running  time.Time // QMP reports the guest running
	dialed   time.Time // the agent admitted the host (template's secret)
	handover time.Time // Handover answered: reseeded, re-keyed
}

func (m restoreMarks) log(ctx context.Context, id string) {
	ms := func(from, to time.Time) float64 { return float64(to.Sub(from).Microseconds()) / 1000 }
	log.G(ctx).WithFields(log.Fields{
		"sandbox":            id,
		"spawn_to_qmp_ms":    ms(m.spawned, m.qmp),
		"qmp_to_loaded_ms":   ms(m.qmp, m.incoming),
		"loaded_to_run_ms":   ms(m.incoming, m.running),
		"run_to_agent_ms":    ms(m.running, m.dialed),
		"agent_to_handed_ms": ms(m.dialed, m.handover),
		"spawn_to_handed_ms": ms(m.spawned, m.handover),
	}).Debug("clone restored")
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
