// Package task is podvm's implementation of containerd's shim task API
// (runtime/task/v3). It is thin: it keeps the state containerd asks about
// (processes, exit statuses, stdio) and delegates the VM and the guest to
// the sandbox package. All containers handled by one shim share one VM.
package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
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
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor/drivers"
	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/share"
	"github.com/podvm/podvm/runtime/stdio"
)

var _ taskAPI.TTRPCTaskService = (*Service)(nil)

// CRI annotations that group a pod's containers into one sandbox.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
)

// exitStatusVMDied is reported for every process of a VM that died under it,
// like a process killed with no exit code of its own.
const exitStatusVMDied = 255

// outputDrainTimeout bounds how long an exit waits for the guest to flush
// the process's output, so a stuck relay can never hide an exit.
const outputDrainTimeout = 5 * time.Second

// removeTimeout bounds the guest's part of a Delete (runc delete and the
// wait for the container's processes).
const removeTimeout = 15 * time.Second

// Service is the shim's TaskService.
type Service struct {
	ctx       context.Context
	publisher shim.Publisher
	shutdown  shutdown.Service
	events    chan any

	mu         sync.Mutex
	cfg        *config.Config
	sb         *sandbox.Sandbox
	containers map[string]*container
	// oomReported names containers a TaskOOM was published for: the guest
	// reports an init's OOM kill both with its exit and on GetOOMEvent, and
	// CRI needs it once, before the exit.
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
}

type container struct {
	id     string
	bundle string
	owner  bool // the container whose Create booted the VM
	init   *process
	execs  map[string]*process
}

// NewService starts the service; shutdown's callbacks stop the VM.
func NewService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (*Service, error) {
	s := &Service{ctx: ctx, publisher: publisher, shutdown: sd, events: make(chan any, 128), containers: map[string]*container{}, oomReported: map[string]bool{}}
	go s.forwardEvents()
	sd.RegisterCallback(func(ctx context.Context) error {
		s.mu.Lock()
		sb := s.sb
		s.mu.Unlock()
		if sb != nil {
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

func (s *Service) getContainer(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "container %s", id)
	}
	return c, nil
}

func (s *Service) getProcess(id, execID string) (*container, *process, error) {
	c, err := s.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, c.init, nil
	}
	s.mu.Lock()
	p, ok := c.execs[execID]
	s.mu.Unlock()
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

// Create boots the VM on the pod's first container and creates the
// container in the guest.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "checkpoint/restore is not supported by podvm")
	}
	streams := stdio.Streams{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := stdio.Validate(streams); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "%v", err)
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}

	sb, owner, err := s.ensureSandbox(ctx, r, spec)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	defer func() {
		if retErr != nil && owner {
			s.mu.Lock()
			s.sb = nil
			s.mu.Unlock()
			sb.Destroy(context.WithoutCancel(ctx))
			crash.RemoveRecord(r.Bundle)
		}
	}()

	_, pod := spec.Annotations[annotationContainerType]
	opts := guestspec.Options{Pod: pod, Submounts: share.Submounts}
	s.mu.Lock()
	opts.PodCgroup = s.guestPodCgroup
	if spec.Annotations[annotationContainerType] == "container" {
		opts.SandboxGuestPid = s.sandboxGuestPid
	}
	s.mu.Unlock()
	guest, rewritten, err := guestspec.Rewrite(spec, r.ID, opts)
	if err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	if d := rewritten.Dropped; len(d.Mounts)+len(d.Devices) > 0 || d.Hooks {
		log.G(ctx).WithFields(log.Fields{"container": r.ID, "mounts": d.Mounts, "devices": d.Devices, "hooks": d.Hooks}).
			Warn("host-only parts of the OCI spec are not passed into the pod VM")
	}

	if !owner {
		// The owner's record was written before its VM booted.
		if err := crash.WriteRecord(r.Bundle, crash.Record{SandboxID: sb.ID, StateDir: sb.StateDir, ContainerID: r.ID}); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		defer func() {
			if retErr != nil {
				crash.RemoveRecord(r.Bundle)
			}
		}()
	}

	var mounts []mount.Mount
	for _, m := range r.Rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if len(mounts) == 0 {
		// No snapshot mounts (ctr run --rootfs, or --config): the spec's
		// root, relative to the bundle as runc reads it.
		root := spec.Root.Path
		if !filepath.IsAbs(root) {
			root = filepath.Join(r.Bundle, root)
		}
		mounts = []mount.Mount{{Type: "bind", Source: root, Options: []string{"rbind", "rw"}}}
	}
	if err := sb.MountRootfs(ctx, r.ID, mounts); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	defer func() {
		if retErr != nil {
			sb.UnmountRootfs(r.ID)
		}
	}()
	if err := sb.ShareMounts(ctx, r.ID, rewritten.Shares); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}

	specJSON, err := json.Marshal(guest)
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("encode guest spec: %w", err))
	}
	resp, err := sb.Agent.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: r.ID, OciSpec: specJSON,
		Stdin: r.Stdin != "", Stdout: r.Stdout != "", Stderr: r.Stderr != "", Terminal: r.Terminal,
	})
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("create container %s in the guest: %w", r.ID, err))
	}
	if spec.Root.Readonly {
		if err := sb.SealRootfs(r.ID); err != nil {
			sb.Agent.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: r.ID})
			return nil, errgrpc.ToGRPC(err)
		}
	}
	p := newProcess(r.ID, "", streams)
	p.guestPid = resp.Pid
	p.relay, err = stdio.Start(ctx, sb.Agent, r.ID, "", streams)
	if err != nil {
		sb.Agent.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: r.ID})
		return nil, errgrpc.ToGRPC(err)
	}
	s.mu.Lock()
	s.containers[r.ID] = &container{id: r.ID, bundle: r.Bundle, owner: owner, init: p, execs: map[string]*process{}}
	if owner {
		s.sandboxGuestPid = resp.Pid
	}
	s.mu.Unlock()

	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO:  &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid: s.hostPid(),
	})
	return &taskAPI.CreateTaskResponse{Pid: s.hostPid()}, nil
}

// hostPid is the pid podvm reports for every task. Guest pids mean nothing
// on the host, and signals go through the shim anyway (Kata does the same).
func (s *Service) hostPid() uint32 { return uint32(os.Getpid()) }

// ensureSandbox returns the shim's sandbox, booting it on first use.
func (s *Service) ensureSandbox(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (*sandbox.Sandbox, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb != nil {
		select {
		case <-s.sb.Done():
			return nil, false, fmt.Errorf("the pod VM of sandbox %s is gone: %v", s.sb.ID, s.sb.ExitError())
		default:
		}
		// The pod's VM is booted; its annotations must still be allowed
		// (CRI copies the pod's annotations to every container).
		if _, _, err := s.cfg.WithAnnotations(spec.Annotations); err != nil {
			return nil, false, errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
		return s.sb, false, nil
	}
	if spec.Annotations[annotationContainerType] == "container" {
		return nil, false, fmt.Errorf("container %s belongs to sandbox %s, which this shim does not run (was the sandbox created with another runtime?)",
			r.ID, spec.Annotations[annotationSandboxID])
	}
	cfg, path, err := loadConfig(r.Options)
	if err != nil {
		return nil, false, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	cfg, applied, err := cfg.WithAnnotations(spec.Annotations)
	if err != nil {
		return nil, false, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	if len(applied) > 0 {
		log.G(ctx).WithField("keys", applied).Info("podvm config keys set by the pod's annotations")
	}
	driver, err := drivers.New(cfg)
	if err != nil {
		return nil, false, fmt.Errorf("podvm config %s: %w", path, err)
	}
	sandboxID := r.ID
	if id := spec.Annotations[annotationSandboxID]; id != "" {
		sandboxID = id
	}
	// The guest's own hostname; containers with a UTS namespace set theirs
	// from their spec. Only the spec's hostname is used: a pod name may be
	// longer than the kernel's 64-byte limit.
	hostname := spec.Hostname
	hostCgroup, guestPodCgroup, err := podCgroups(spec, sandboxID)
	if err != nil {
		return nil, false, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	size, err := vmSize(ctx, spec, cfg)
	if err != nil {
		return nil, false, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("sandbox %s: %v", sandboxID, err))
	}
	// Recorded before anything exists, so that containerd's `shim delete`
	// can clean up after a shim that dies while the VM boots.
	rec := crash.Record{SandboxID: sandboxID, StateDir: sandbox.StateDir(cfg, sandboxID), ContainerID: r.ID, Owner: true}
	if err := crash.WriteRecord(r.Bundle, rec); err != nil {
		return nil, false, err
	}
	sb, err := sandbox.Create(ctx, sandbox.Options{
		ID: sandboxID, Hostname: hostname, Config: cfg, Driver: driver, NetNS: podNetNS(spec),
		Size: size, HostCgroup: hostCgroup, GuestPodCgroup: guestPodCgroup,
	})
	if err != nil {
		crash.RemoveRecord(r.Bundle)
		return nil, false, err
	}
	d := sb.Agent.Details
	log.G(ctx).WithFields(log.Fields{
		"sandbox": sb.ID, "guest_kernel": d.KernelRelease, "agent": d.AgentVersion, "transport": d.Transport,
		"boot_to_agent": sb.Timings.AgentReady.Sub(sb.Timings.Begin).String(),
	}).WithFields(startPhaseFields(sb)).Info("pod VM ready")
	s.cfg, s.sb, s.guestPodCgroup = cfg, sb, guestPodCgroup
	go s.watchVM(sb)
	go s.forwardOOMEvents(sb)
	return sb, true, nil
}

// podCgroups says where a CRI pod's VM runs on the host (the sandbox
// container's cgroupsPath, in every hierarchy) and below which guest cgroup
// its containers go. Both are empty for a lone container (ctr run) and for
// a pod whose spec names no cgroup: its VM stays in the shim's cgroup.
func podCgroups(spec *specs.Spec, sandboxID string) (host, guest string, err error) {
	if spec.Annotations[annotationContainerType] != "sandbox" || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return "", "", nil
	}
	host, err = hostcgroup.ParsePath(spec.Linux.CgroupsPath)
	if err != nil {
		return "", "", fmt.Errorf("sandbox %s: %w", sandboxID, err)
	}
	return host, guestspec.PodCgroup(spec.Linux.CgroupsPath, sandboxID), nil
}

// podNetNS is the network namespace CNI configured for a CRI pod, named in
// its sandbox container's spec; empty when there is none (ctr run, or a
// host-network pod, whose VM then has no network interface).
func podNetNS(spec *specs.Spec) string {
	if spec.Annotations[annotationContainerType] != "sandbox" || spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// watchVM marks every process exited when the VM dies under them.
func (s *Service) watchVM(sb *sandbox.Sandbox) {
	<-sb.Done()
	err := sb.ExitError()
	if err == nil {
		return // stopped on purpose
	}
	log.G(s.ctx).WithError(err).WithField("sandbox", sb.ID).Error("pod VM died; reporting its containers as exited")
	s.mu.Lock()
	var all []*container
	for _, c := range s.containers {
		all = append(all, c)
	}
	s.mu.Unlock()
	now := time.Now()
	for _, c := range all {
		for _, p := range s.processesOf(c) {
			p.closeRelay()
			if p.setExited(exitStatusVMDied, now) {
				s.sendExit(p)
			}
		}
	}
}

// processesOf lists a container's execs, then its init (whose exit must be
// published last, as containerd expects).
func (s *Service) processesOf(c *container) []*process {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []*process
	for _, e := range c.execs {
		ps = append(ps, e)
	}
	return append(ps, c.init)
}

// Start starts a created container, or an exec added by Exec.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	sb := s.sandbox()
	if r.ExecID != "" {
		if status, _, _ := c.init.state(); status != task.Status_RUNNING {
			return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "container %s is not running", r.ID)
		}
	}
	if !p.setRunning() {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "process %s of container %s is not in the created state", r.ExecID, r.ID)
	}
	if r.ExecID == "" {
		go s.waitExit(sb, p)
		if _, err := sb.Agent.StartContainer(ctx, &api.StartContainerRequest{ContainerId: r.ID}); err != nil {
			return nil, errgrpc.ToGRPC(fmt.Errorf("start container %s in the guest: %w", r.ID, err))
		}
		log.G(ctx).WithFields(log.Fields{"container": r.ID, "host_started_ns": time.Now().UnixNano()}).Info("container started in the pod VM")
		s.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: s.hostPid()})
		return &taskAPI.StartResponse{Pid: s.hostPid()}, nil
	}
	if err := s.startExec(ctx, sb, p); err != nil {
		p.setExited(exitStatusVMDied, time.Now())
		return nil, errgrpc.ToGRPC(err)
	}
	go s.waitExit(sb, p)
	s.send(&eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: s.hostPid()})
	return &taskAPI.StartResponse{Pid: s.hostPid()}, nil
}

// waitExit asks the agent for the exit, lets the output drain, then records
// and publishes it.
func (s *Service) waitExit(sb *sandbox.Sandbox, p *process) {
	resp, err := sb.Agent.WaitProcess(s.ctx, &api.WaitProcessRequest{ContainerId: p.containerID, ExecId: p.execID})
	if err != nil {
		// The VM's death is reported by watchVM; anything else is logged.
		select {
		case <-sb.Done():
		default:
			log.G(s.ctx).WithError(err).WithField("container", p.containerID).Error("wait for guest process")
		}
		return
	}
	dctx, cancel := context.WithTimeout(s.ctx, outputDrainTimeout)
	if err := p.relay.WaitOutput(dctx); err != nil {
		log.G(s.ctx).WithField("container", p.containerID).Warn("guest output not drained in time after exit")
	}
	cancel()
	at := time.Now()
	if resp.ExitedAtNs > 0 {
		at = time.Unix(0, resp.ExitedAtNs)
	}
	if resp.OomKilled && p.execID == "" {
		// Before the exit: CRI reports OOMKilled only if TaskOOM came first.
		s.sendOOM(p.containerID)
	}
	if p.setExited(resp.ExitStatus, at) {
		s.sendExit(p)
	}
}

func (s *Service) sendExit(p *process) {
	_, status, at := p.state()
	id := p.containerID
	if p.execID != "" {
		id = p.execID
	}
	s.send(&eventstypes.TaskExit{
		ContainerID: p.containerID, ID: id, Pid: s.hostPid(),
		ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at),
	})
}

// Delete removes a stopped (or never started) process; deleting the init
// removes the container, and deleting the container that booted the VM
// stops the VM.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if status, _, _ := p.state(); status == task.Status_RUNNING {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "process %s of container %s is still running; kill it first", r.ExecID, r.ID)
	}
	if r.ExecID != "" {
		p.closeRelay()
		p.setExited(exitStatusVMDied, time.Now())
		if _, err := s.sandbox().Agent.RemoveProcess(ctx, &api.RemoveProcessRequest{ContainerId: r.ID, ExecId: r.ExecID}); err != nil && !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			log.G(ctx).WithError(err).WithField("exec", r.ExecID).Debug("remove exec in the guest")
		}
		s.mu.Lock()
		delete(c.execs, r.ExecID)
		s.mu.Unlock()
		_, status, at := p.state()
		return &taskAPI.DeleteResponse{Pid: s.hostPid(), ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
	}
	s.mu.Lock()
	s.deleting++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.deleting--
		s.mu.Unlock()
	}()
	sb := s.sandbox()
	for _, e := range s.processesOf(c) {
		e.closeRelay()
	}
	select {
	case <-sb.Done():
	default:
		// Bounded: a hung guest must not hang the delete, which goes on
		// to unmount the rootfs (and destroy the VM if it owns it).
		rctx, cancel := context.WithTimeout(ctx, removeTimeout)
		if _, err := sb.Agent.RemoveContainer(rctx, &api.RemoveContainerRequest{ContainerId: r.ID}); err != nil {
			log.G(ctx).WithError(err).WithField("container", r.ID).Warn("remove container in the guest")
		}
		cancel()
	}
	if err := sb.UnmountRootfs(r.ID); err != nil {
		log.G(ctx).WithError(err).WithField("container", r.ID).Warn("unmount container rootfs")
	}
	if p.setExited(exitStatusVMDied, time.Now()) {
		// Deleted before it ever ran: still report a (synthetic) exit.
		s.sendExit(p)
	}
	s.mu.Lock()
	delete(s.containers, r.ID)
	delete(s.oomReported, r.ID)
	s.mu.Unlock()
	if c.owner {
		if err := sb.Destroy(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("destroy pod VM")
		}
		// CRI deletes the sandbox container last; anything still here lost
		// its VM just now and must not stay "running" forever.
		s.mu.Lock()
		var orphans []*container
		for _, other := range s.containers {
			orphans = append(orphans, other)
		}
		s.mu.Unlock()
		for _, o := range orphans {
			for _, op := range s.processesOf(o) {
				op.closeRelay()
				if op.setExited(exitStatusVMDied, time.Now()) {
					s.sendExit(op)
				}
			}
		}
	}
	crash.RemoveRecord(c.bundle)

	_, status, at := p.state()
	s.send(&eventstypes.TaskDelete{ContainerID: r.ID, Pid: s.hostPid(), ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)})
	return &taskAPI.DeleteResponse{Pid: s.hostPid(), ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Kill signals the container's init (or all its processes).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if status, _, _ := p.state(); status == task.Status_STOPPED {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "process already finished")
	}
	sb := s.sandbox()
	if _, err := sb.Agent.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: r.ID, ExecId: r.ExecID, Signal: r.Signal, All: r.All}); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("signal %d to container %s: %w", r.Signal, r.ID, err))
	}
	return &ptypes.Empty{}, nil
}

// Wait blocks until the process exits.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	_, status, at := p.state()
	return &taskAPI.WaitResponse{ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// State reports a process's status.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	status, exit, at := p.state()
	return &taskAPI.StateResponse{
		ID: r.ID, Bundle: c.bundle, Pid: s.hostPid(), Status: status,
		Stdin: p.streams.Stdin, Stdout: p.streams.Stdout, Stderr: p.streams.Stderr, Terminal: p.streams.Terminal,
		ExitStatus: exit, ExitedAt: protobuf.ToTimestamp(at), ExecID: r.ExecID,
	}, nil
}

// Connect reports the shim's pid.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.hostPid()}, nil
}

// Shutdown ends the shim once it serves no container and deletes none:
// containerd calls it again after each Delete it is still waiting for.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	n := len(s.containers) + s.deleting
	s.mu.Unlock()
	if n > 0 {
		return &ptypes.Empty{}, nil
	}
	s.shutdown.Shutdown()
	return &ptypes.Empty{}, nil
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
