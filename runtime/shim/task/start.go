package task

import (
	"context"
	"fmt"
	"slices"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/shim/container"
)

// outputDrainTimeout bounds how long an exit waits for the guest to flush
// the process's output, so a stuck relay can never hide an exit.
const outputDrainTimeout = 5 * time.Second

// Start starts a created container (agent StartContainer: runc start), or
// an exec added by Exec (agent ExecProcess: runc exec); a goroutine then
// waits for its exit.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	sb := s.sandbox()
	if r.ExecID != "" {
		if status, _, _ := c.Init().State(); status != task.Status_RUNNING {
			return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "container %s is not running", r.ID)
		}
	}
	if !p.SetRunning() {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "process %s of container %s is not in the created state", r.ExecID, r.ID)
	}
	if r.ExecID == "" {
		go s.waitExit(sb, p)
		resp, err := sb.Agent.StartContainer(ctx, &api.StartContainerRequest{ContainerId: r.ID})
		if err != nil {
			return nil, errgrpc.ToGRPC(fmt.Errorf("start container %s in the guest: %w", r.ID, err))
		}
		fields := log.Fields{"container": r.ID, "host_started_ns": time.Now().UnixNano()}
		addGuestMarks(fields, resp.Marks, contract.ContainerMarks)
		log.G(ctx).WithFields(fields).Info("container started in the pod VM")
		s.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: s.hostPid()})
		return &taskAPI.StartResponse{Pid: s.hostPid()}, nil
	}
	if err := c.StartExec(ctx, p); err != nil {
		p.SetExited(container.ExitStatusUnknown, time.Now())
		return nil, errgrpc.ToGRPC(err)
	}
	go s.waitExit(sb, p)
	s.send(&eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: s.hostPid()})
	return &taskAPI.StartResponse{Pid: s.hostPid()}, nil
}

// waitExit asks the agent for the exit, lets the output drain, then records
// and publishes it.
func (s *Service) waitExit(sb *sandbox.Sandbox, p *container.Process) {
	resp, err := sb.Agent.WaitProcess(s.ctx, &api.WaitProcessRequest{ContainerId: p.ContainerID(), ExecId: p.ExecID()})
	if err != nil {
		// The VM's death is reported by watchVM, a process recorded
		// killed with it by killWithVM; anything else is logged.
		if status, _, _ := p.State(); status == task.Status_STOPPED {
			return
		}
		select {
		case <-sb.Done():
		default:
			log.G(s.ctx).WithError(err).WithField("container", p.ContainerID()).Error("wait for guest process")
		}
		return
	}
	answered := time.Now()
	dctx, cancel := context.WithTimeout(s.ctx, outputDrainTimeout)
	if err := p.WaitOutput(dctx); err != nil {
		log.G(s.ctx).WithField("container", p.ContainerID()).Warn("guest output not drained in time after exit")
	}
	cancel()
	if p.ExecID() != "" {
		logExecEnded(s.ctx, p, resp.Marks, answered)
	}
	at := time.Now()
	if resp.ExitedAtNs > 0 {
		at = time.Unix(0, resp.ExitedAtNs)
	}
	if resp.OomKilled && p.ExecID() == "" {
		// Before the exit: CRI reports OOMKilled only if TaskOOM came first.
		s.sendOOM(p.ContainerID())
	}
	if p.SetExited(resp.ExitStatus, at) {
		s.sendExit(p)
	}
}

// exitAll records an exit with ExitStatusUnknown for every process of cs
// that has none yet (their VM is gone), and publishes it.
func (s *Service) exitAll(cs []*container.Container) {
	now := time.Now()
	for _, c := range cs {
		for _, p := range c.Processes() {
			p.CloseRelay()
			if p.SetExited(container.ExitStatusUnknown, now) {
				s.sendExit(p)
			}
		}
	}
}

func (s *Service) sendExit(p *container.Process) {
	_, status, at := p.State()
	id := p.ContainerID()
	if p.ExecID() != "" {
		id = p.ExecID()
	}
	s.send(&eventstypes.TaskExit{
		ContainerID: p.ContainerID(), ID: id, Pid: s.hostPid(),
		ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at),
	})
}

// logExecEnded logs the steps of an exec's life, the host's (Unix
// nanoseconds) and the guest's (CLOCK_BOOTTIME), once its output drained:
// `podvm bench exec` splits an exec's time with them. waitAnswered is when
// the agent's WaitProcess answer arrived.
func logExecEnded(ctx context.Context, p *container.Process, marks []*api.GuestMark, waitAnswered time.Time) {
	st := p.ExecStarted()
	fields := log.Fields{
		"container": p.ContainerID(), "exec": p.ExecID(),
		"host_exec_begin_ns":    st.Begin.UnixNano(),
		"host_exec_answered_ns": st.ExecAnswered.UnixNano(),
		"host_relay_started_ns": st.RelayStarted.UnixNano(),
		"host_wait_answered_ns": waitAnswered.UnixNano(),
		"host_drained_ns":       time.Now().UnixNano(),
	}
	addGuestMarks(fields, marks, contract.ProcessMarks)
	log.G(ctx).WithFields(fields).Debug("exec ended in the pod VM")
}

// addGuestMarks adds the guest's marks to a log line. The guest names
// them: only the contract's names (known) are taken, so a hostile guest
// cannot flood the line or shape its fields.
func addGuestMarks(fields log.Fields, marks []*api.GuestMark, known []string) {
	for _, m := range marks {
		if m != nil && slices.Contains(known, m.Name) {
			fields["guest_"+m.Name+"_ns"] = m.BoottimeNs
		}
	}
}
