// Package task is podvm's implementation of containerd's shim task API
// (runtime/task/v3). It is thin: it turns containerd's calls into steps on
// the shim's containers (runtime/shim/container) and the pod's VM
// (runtime/sandbox), and publishes the task events. All containers handled
// by one shim share one VM.
package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/shim/container"
	"github.com/podvm/podvm/runtime/shim/grouping"
	"github.com/podvm/podvm/runtime/stdio"
)

var _ taskAPI.TTRPCTaskService = (*Service)(nil)

// CRI annotations that group a pod's containers into one sandbox.
const (
	annotationContainerType = grouping.AnnotationContainerType
	annotationSandboxID     = grouping.AnnotationSandboxID
)

// Service is the shim's TaskService.
type Service struct {
	ctx        context.Context
	publisher  shim.Publisher
	shutdown   shutdown.Service
	events     chan any
	containers *container.Table

	mu  sync.Mutex
	cfg *config.Config
	sb  *sandbox.Sandbox
	// vm identifies sb's pod: which containers may join it.
	vm grouping.VM
	// agent is sb's agent; mem bounds its memory figures (nil when the
	// host cannot measure the VM).
	agent api.AgentServiceService
	mem   *podMemory
	// oomReported names containers a TaskOOM was published for: the guest
	// reports an init's OOM kill both with its exit and on GetOOMEvent, and
	// CRI needs it once, before the exit. Only ids in containers are kept.
	oomReported map[string]bool
	// sandboxGuestPid is the guest pid of the pod's sandbox container,
	// whose IPC/UTS/PID namespaces the pod's other containers join.
	sandboxGuestPid uint32
	// guestPodCgroup is the guest cgroup every container of a CRI pod is
	// created below (guestspec.PodCgroup); "" for a lone container.
	guestPodCgroup string
	// deleting counts container Deletes in progress. Shutdown waits for
	// them: containerd may delete a pod's containers concurrently (it does
	// when the VM died and every task exited at once), and calls Shutdown
	// after each; ending the shim while the owner's Delete still destroys
	// the VM would lose that Delete's answer ("ttrpc: closed").
	deleting int
	// criSandbox is the id of the CRI sandbox (pause) container that
	// booted the VM; "" for a lone container.
	criSandbox string
	// vmGone closes when the destroy of the VM that its last container's
	// Delete began is done (destroyIdleVM); nil before. Shutdown waits
	// for it.
	vmGone chan struct{}
}

// NewService starts the service; shutdown's callbacks stop the VM.
func NewService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (*Service, error) {
	s := &Service{
		ctx: ctx, publisher: publisher, shutdown: sd, events: make(chan any, 128),
		containers: container.NewTable(), oomReported: map[string]bool{},
	}
	go s.forwardEvents()
	sd.RegisterCallback(func(ctx context.Context) error {
		s.mu.Lock()
		gone := s.vmGone
		s.mu.Unlock()
		if gone != nil { // the last Delete's destroy, and its record's removal
			select {
			case <-gone:
			case <-ctx.Done():
			}
		}
		if sb := s.sandbox(); sb != nil {
			return sb.Destroy(ctx)
		}
		return nil
	})
	return s, nil
}

// RegisterTTRPC registers the task API.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

func (s *Service) getContainer(id string) (*container.Container, error) {
	c, ok := s.containers.Get(id)
	if !ok {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "container %s", id)
	}
	return c, nil
}

func (s *Service) getProcess(id, execID string) (*container.Container, *container.Process, error) {
	c, err := s.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, c.Init(), nil
	}
	p, ok := c.Exec(execID)
	if !ok {
		return nil, nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "exec %s in container %s", execID, id)
	}
	return c, p, nil
}

// sandbox returns the shim's sandbox; it exists once a Create succeeded.
func (s *Service) sandbox() *sandbox.Sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb
}

// hostPid is the pid podvm reports for every task. Guest pids mean nothing
// on the host, and signals go through the shim anyway (Kata does the same).
func (s *Service) hostPid() uint32 { return uint32(os.Getpid()) }

// Create boots the VM on the pod's first container (which then owns it)
// and creates the container in the guest. On failure everything it did
// is undone, the VM too if this call booted it.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	streams, spec, err := checkCreate(r)
	if err != nil {
		return nil, err
	}
	sb, owner, err := s.ensureSandbox(ctx, r, spec)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	defer func() {
		if retErr != nil && owner {
			s.abandonSandbox(ctx, sb, r.Bundle)
		}
	}()
	guest, err := container.RewriteSpec(ctx, spec, r.ID, s.guestOptions(spec))
	if err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	if !owner {
		if err := writeMemberRecord(sb, r); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		defer func() {
			if retErr != nil {
				crash.RemoveRecord(r.Bundle)
			}
		}()
	}
	c, err := container.New(ctx, sb, sb.Agent, container.Config{
		ID: r.ID, Bundle: r.Bundle, Owner: owner, Spec: guest, Streams: streams,
		Rootfs: container.RootfsMounts(r.Rootfs, spec, r.Bundle),
	})
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	s.addContainer(c)
	if owner && spec.Annotations[annotationContainerType] == "sandbox" {
		s.mu.Lock()
		s.criSandbox = r.ID
		s.mu.Unlock()
	}
	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO:  &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid: s.hostPid(),
	})
	return &taskAPI.CreateTaskResponse{Pid: s.hostPid()}, nil
}

// checkCreate refuses what podvm cannot do before a VM is booted for
// nothing, and reads the bundle's OCI spec.
func checkCreate(r *taskAPI.CreateTaskRequest) (stdio.Streams, *specs.Spec, error) {
	if r.Checkpoint != "" {
		return stdio.Streams{}, nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "checkpoint/restore is not supported by podvm")
	}
	streams := stdio.Streams{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := stdio.Validate(streams); err != nil {
		return streams, nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "%v", err)
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return streams, nil, errgrpc.ToGRPC(err)
	}
	return streams, spec, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("parse OCI spec %s/config.json: %w", bundle, err)
	}
	return &sp, nil
}

// addContainer makes a created container known to the task API.
func (s *Service) addContainer(c *container.Container) {
	s.containers.Add(c)
	if c.Owner {
		s.mu.Lock()
		s.sandboxGuestPid = c.Init().GuestPid()
		s.mu.Unlock()
	}
}

// Kill signals the container's init (or all its processes). A SIGKILL the
// guest does not confirm with an exit within killConfirmTimeout is
// recorded as done (confirmKill).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if status, _, _ := p.State(); status == task.Status_STOPPED {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "process already finished")
	}
	if s.killWithVM(c, p, r) {
		return &ptypes.Empty{}, nil
	}
	agent, _ := s.guest()
	if _, err := agent.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: r.ID, ExecId: r.ExecID, Signal: r.Signal, All: r.All}); err != nil {
		if status, _, _ := p.State(); status == task.Status_STOPPED {
			// It ended while the signal was on its way, and its VM may be
			// gone with it: containerd's usual answer, as runc's shim gives.
			return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "process already finished")
		}
		return nil, errgrpc.ToGRPC(fmt.Errorf("signal %d to container %s: %w", r.Signal, r.ID, err))
	}
	if r.Signal == uint32(syscall.SIGKILL) {
		go s.confirmKill(p, killConfirmTimeout)
	}
	return &ptypes.Empty{}, nil
}

// killWithVM records a SIGKILL of a CRI pod's sandbox container, left
// alone in its VM, as done (exit 137) without the guest's `runc kill` (a
// Go-runtime start under TCG): CRI's StopPodSandbox sends it and deletes
// the task on its exit, and the VM's destroy, which that Delete begins,
// ends the pause process with everything else in the guest. Nothing else
// lives in the VM to see the difference.
func (s *Service) killWithVM(c *container.Container, p *container.Process, r *taskAPI.KillRequest) bool {
	s.mu.Lock()
	alone := c.ID == s.criSandbox && s.containers.Len() == 1
	s.mu.Unlock()
	if !alone || r.Signal != uint32(syscall.SIGKILL) || r.ExecID != "" {
		return false
	}
	p.CloseRelay()
	if p.SetExited(killedExitStatus, time.Now()) {
		s.sendExit(p)
	}
	return true
}

// killConfirmTimeout is how long a SIGKILL'd process may take to be
// reported exited by the guest: runc kill and the reap take well under a
// second even under TCG on a loaded host. (A variable for tests.)
var killConfirmTimeout = 10 * time.Second

// confirmKill records p as killed (exit 137) if the guest has not reported
// its exit within timeout. The exit is the guest's to report, and a guest
// that owns its agent may never do so: without this a pod whose guest went
// silent could never be stopped, as CRI's StopContainer waits for the exit
// and the VM is only destroyed after it. What the guest still runs goes
// with the VM.
func (s *Service) confirmKill(p *container.Process, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if p.Wait(ctx) == nil || s.ctx.Err() != nil {
		return
	}
	log.G(s.ctx).WithFields(log.Fields{"container": p.ContainerID(), "exec": p.ExecID()}).
		Warnf("the guest did not report the exit of a SIGKILLed process within %s; recording it as killed", timeout)
	p.CloseRelay()
	if p.SetExited(killedExitStatus, time.Now()) {
		s.sendExit(p)
	}
}

// killedExitStatus is what a shell reports for a process ended by SIGKILL.
const killedExitStatus = 128 + uint32(syscall.SIGKILL)

// Wait blocks until the process exits.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Wait(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	_, status, at := p.State()
	return &taskAPI.WaitResponse{ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// State reports a process's status.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	status, exit, at := p.State()
	st := p.Streams()
	return &taskAPI.StateResponse{
		ID: r.ID, Bundle: c.Bundle, Pid: s.hostPid(), Status: status,
		Stdin: st.Stdin, Stdout: st.Stdout, Stderr: st.Stderr, Terminal: st.Terminal,
		ExitStatus: exit, ExitedAt: protobuf.ToTimestamp(at), ExecID: r.ExecID,
	}, nil
}

// Connect reports the shim's pid.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.hostPid()}, nil
}

func notYet(what string) error {
	return errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "%s is not supported by podvm yet", what)
}

// Pause is not supported.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	return nil, notYet("pause")
}

// Resume is not supported.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	return nil, notYet("resume")
}

// Checkpoint is not supported.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	return nil, notYet("checkpoint")
}
