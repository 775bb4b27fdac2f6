package task

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor/drivers"
	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/share"
	"github.com/podvm/podvm/runtime/shim/grouping"
)

// ensureSandbox returns the shim's sandbox, booting it on first use; owner
// reports that this call booted it.
func (s *Service) ensureSandbox(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (sb *sandbox.Sandbox, owner bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb != nil {
		sb, err = s.joinSandbox(r.ID, spec)
		return sb, false, err
	}
	if spec.Annotations[annotationContainerType] == "container" {
		return nil, false, fmt.Errorf("container %s belongs to sandbox %s, which this shim does not run (was the sandbox created with another runtime?)",
			r.ID, spec.Annotations[annotationSandboxID])
	}
	if sb, err = s.bootSandbox(ctx, r, spec); err != nil {
		return nil, false, err
	}
	return sb, true, nil
}

// joinSandbox checks that another container of the pod may use the booted
// VM: it must be of the VM's pod (grouping.VM.CheckJoin), whatever group
// the shim manager routed it by. Called with s.mu held.
func (s *Service) joinSandbox(id string, spec *specs.Spec) (*sandbox.Sandbox, error) {
	select {
	case <-s.sb.Done():
		return nil, fmt.Errorf("the pod VM of sandbox %s is gone: %v", s.sb.ID, s.sb.ExitError())
	default:
	}
	if err := s.vm.CheckJoin(id, spec); err != nil {
		return nil, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("refused to join the pod VM of sandbox %s: %v", s.sb.ID, err))
	}
	// The pod's annotations must still be allowed (CRI copies the pod's
	// annotations to every container).
	if _, _, err := s.cfg.WithAnnotations(spec.Annotations); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return s.sb, nil
}

// bootSandbox boots the pod's VM for its first container. Called with
// s.mu held.
func (s *Service) bootSandbox(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (*sandbox.Sandbox, error) {
	vm, err := grouping.NewVM(r.ID, spec, int(s.hostPid()))
	if err != nil {
		return nil, errdefs.ErrPermissionDenied.WithMessage(err.Error())
	}
	opts, err := sandboxOptions(ctx, r, spec)
	if err != nil {
		return nil, err
	}
	// Recorded before anything exists, so that containerd's `shim delete`
	// can clean up after a shim that dies while the VM boots.
	rec := crash.Record{SandboxID: opts.ID, StateDir: sandbox.StateDir(opts.Config, opts.ID), ContainerID: r.ID, Owner: true}
	if err := crash.WriteRecord(r.Bundle, rec); err != nil {
		return nil, err
	}
	sb, err := sandbox.Create(ctx, opts)
	if err != nil {
		crash.RemoveRecord(r.Bundle)
		return nil, err
	}
	d := sb.Agent.Details
	log.G(ctx).WithFields(log.Fields{
		"sandbox": sb.ID, "guest_kernel": d.KernelRelease, "agent": d.AgentVersion, "transport": d.Transport,
		"boot_to_agent": sb.Timings.AgentReady.Sub(sb.Timings.Begin).String(),
	}).WithFields(startPhaseFields(sb)).Info("pod VM ready")
	s.cfg, s.sb, s.vm, s.guestPodCgroup = opts.Config, sb, vm, opts.GuestPodCgroup
	s.agent, s.mem = sb.Agent, newPodMemory(ctx, opts.HostCgroup, opts.Config.Hypervisor.DefaultMemoryMiB)
	go s.watchVM(sb)
	go s.forwardOOMEvents(sb.Agent, sb.Done())
	return sb, nil
}

// sandboxOptions are the pod VM's options from the first container's
// request: the podvm config (with the pod's annotations), the VM's driver,
// size, cgroups and network namespace.
func sandboxOptions(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (sandbox.Options, error) {
	cfg, path, err := loadConfig(r.Options)
	if err != nil {
		return sandbox.Options{}, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	cfg, err = withAnnotations(ctx, cfg, spec)
	if err != nil {
		return sandbox.Options{}, err
	}
	driver, err := drivers.New(cfg)
	if err != nil {
		return sandbox.Options{}, fmt.Errorf("podvm config %s: %w", path, err)
	}
	sandboxID := r.ID
	if id := spec.Annotations[annotationSandboxID]; id != "" {
		sandboxID = id
	}
	hostCgroup, guestPodCgroup, err := podCgroups(spec, sandboxID)
	if err != nil {
		return sandbox.Options{}, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	size, err := vmSize(ctx, spec, cfg)
	if err != nil {
		return sandbox.Options{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("sandbox %s: %v", sandboxID, err))
	}
	// The guest's own hostname is the spec's (containers with a UTS
	// namespace set theirs from their spec): a pod name may be longer than
	// the kernel's 64-byte limit.
	return sandbox.Options{
		ID: sandboxID, Hostname: spec.Hostname, Config: cfg, Driver: driver, NetNS: podNetNS(spec),
		Size: size, HostCgroup: hostCgroup, GuestPodCgroup: guestPodCgroup,
	}, nil
}

// withAnnotations applies the pod's io.podvm.config.* annotations that the
// config allows.
func withAnnotations(ctx context.Context, cfg *config.Config, spec *specs.Spec) (*config.Config, error) {
	cfg, applied, err := cfg.WithAnnotations(spec.Annotations)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	if len(applied) > 0 {
		log.G(ctx).WithField("keys", applied).Info("podvm config keys set by the pod's annotations")
	}
	return cfg, nil
}

// abandonSandbox undoes the boot of a VM whose first container failed.
func (s *Service) abandonSandbox(ctx context.Context, sb *sandbox.Sandbox, bundle string) {
	s.mu.Lock()
	s.sb = nil
	s.mu.Unlock()
	sb.Destroy(context.WithoutCancel(ctx))
	crash.RemoveRecord(bundle)
}

// writeMemberRecord records in a joining container's bundle which VM it
// lives in, for containerd's `shim delete`. (The owner's record was
// written before its VM booted.)
func writeMemberRecord(sb *sandbox.Sandbox, r *taskAPI.CreateTaskRequest) error {
	return crash.WriteRecord(r.Bundle, crash.Record{SandboxID: sb.ID, StateDir: sb.StateDir, ContainerID: r.ID})
}

// guestOptions are the pod-wide parts of a container's guest spec.
func (s *Service) guestOptions(spec *specs.Spec) guestspec.Options {
	_, pod := spec.Annotations[annotationContainerType]
	opts := guestspec.Options{Pod: pod, Submounts: share.Submounts}
	s.mu.Lock()
	defer s.mu.Unlock()
	opts.PodCgroup = s.guestPodCgroup
	if spec.Annotations[annotationContainerType] == "container" {
		opts.SandboxGuestPid = s.sandboxGuestPid
	}
	return opts
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
	s.exitAll(s.containers.All())
}
