// Package container is one container of a pod VM as the shim keeps it,
// between the task service (runtime/shim/task) and the container's
// processes: its creation (rootfs into the VM's share, the OCI spec
// rewritten for the guest, the agent's CreateContainer, stdio), its init
// and exec processes, and its removal (agent, rootfs, share). It knows
// nothing of containerd's task API or its events; the service turns those
// into these steps.
package container

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/stdio"
)

// removeTimeout bounds the guest's part of a Delete (runc delete and the
// wait for the container's processes).
const removeTimeout = 15 * time.Second

// Pod is the host side of the pod VM a container lives in
// (*sandbox.Sandbox): its share and whether it is still running.
type Pod interface {
	MountRootfs(ctx context.Context, containerID string, mounts []mount.Mount) error
	ShareMounts(ctx context.Context, containerID string, shares []guestspec.SharedMount) error
	UnmountRootfs(containerID string) error
	// SealRootfs makes the container's rootfs read-only on the host too,
	// once the guest has created the container (docs/design.md).
	SealRootfs(containerID string) error
	Done() <-chan struct{}
}

// Config is what New needs to create a container.
type Config struct {
	ID     string
	Bundle string
	// Owner is set for the container whose Create booted the VM.
	Owner bool
	// Rootfs makes the container's root filesystem (RootfsMounts).
	Rootfs  []mount.Mount
	Spec    *Spec
	Streams stdio.Streams
}

// Container is one container in the pod VM, with its init and exec
// processes.
type Container struct {
	ID     string
	Bundle string
	// Owner is set for the container whose Create booted the VM: the task
	// service destroys the VM when it deletes this container.
	Owner bool

	pod   Pod
	agent api.AgentServiceService
	init  *Process

	mu    sync.Mutex
	execs map[string]*Process
}

// RootfsMounts are the mounts that make a container's root filesystem:
// containerd's snapshot mounts, or, when there are none (ctr run --rootfs,
// or --config), a bind of the spec's root, relative to the bundle as runc
// reads it.
func RootfsMounts(rootfs []*types.Mount, spec *specs.Spec, bundle string) []mount.Mount {
	var mounts []mount.Mount
	for _, m := range rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if len(mounts) > 0 {
		return mounts
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	return []mount.Mount{{Type: "bind", Source: root, Options: []string{"rbind", "rw"}}}
}

// New creates the container in the pod VM: its rootfs and shares mounted
// into the VM's share, the container created in the guest, its stdio
// relayed; agent is the VM's agent. On failure it undoes what it did.
func New(ctx context.Context, pod Pod, agent api.AgentServiceService, cfg Config) (_ *Container, retErr error) {
	if err := pod.MountRootfs(ctx, cfg.ID, cfg.Rootfs); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			pod.UnmountRootfs(cfg.ID)
		}
	}()
	if err := pod.ShareMounts(ctx, cfg.ID, cfg.Spec.Shares); err != nil {
		return nil, err
	}
	proc, err := createInGuest(ctx, agent, cfg)
	if err != nil {
		return nil, err
	}
	if err := sealReadonlyRootfs(ctx, pod, agent, cfg); err != nil {
		return nil, err
	}
	relay, err := stdio.Start(ctx, agent, cfg.ID, "", cfg.Streams)
	if err != nil {
		agent.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: cfg.ID})
		return nil, err
	}
	proc.setRelay(relay)
	return &Container{
		ID: cfg.ID, Bundle: cfg.Bundle, Owner: cfg.Owner,
		pod: pod, agent: agent, init: proc, execs: map[string]*Process{},
	}, nil
}

// sealReadonlyRootfs makes a read-only rootfs (root.readonly, as every
// pause container has) read-only on the host as well, so a guest that owns
// its kernel cannot write it through virtiofsd. Not at mount time: runc in
// the guest first creates the spec's mount points in the rootfs.
func sealReadonlyRootfs(ctx context.Context, pod Pod, agent api.AgentServiceService, cfg Config) error {
	if cfg.Spec.Guest.Root == nil || !cfg.Spec.Guest.Root.Readonly {
		return nil
	}
	if err := pod.SealRootfs(cfg.ID); err != nil {
		agent.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: cfg.ID})
		return err
	}
	return nil
}

// createInGuest asks the agent to create the container (runc create): its
// init exists, stopped before the user's program, until StartContainer.
func createInGuest(ctx context.Context, agent api.AgentServiceService, cfg Config) (*Process, error) {
	specJSON, err := json.Marshal(cfg.Spec.Guest)
	if err != nil {
		return nil, fmt.Errorf("encode guest spec: %w", err)
	}
	s := cfg.Streams
	resp, err := agent.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: cfg.ID, OciSpec: specJSON,
		Stdin: s.Stdin != "", Stdout: s.Stdout != "", Stderr: s.Stderr != "", Terminal: s.Terminal,
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s in the guest: %w", cfg.ID, err)
	}
	p := newProcess(cfg.ID, "", s)
	p.guestPid = resp.Pid
	return p, nil
}

// Init is the container's init process.
func (c *Container) Init() *Process { return c.init }

// Exec returns the exec named execID.
func (c *Container) Exec(execID string) (*Process, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	return p, ok
}

// Processes lists the container's execs, then its init (whose exit must be
// published last, as containerd expects).
func (c *Container) Processes() []*Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(slices.Collect(maps.Values(c.execs)), c.init)
}

// Delete removes the container from the VM: the stdio relays stop, the
// agent removes it from the guest (unless the VM is gone; bounded, so a
// hung guest cannot hang the delete), and its rootfs and shares leave the
// VM's share. Failures are logged: what is left goes with the VM.
func (c *Container) Delete(ctx context.Context) {
	for _, p := range c.Processes() {
		p.CloseRelay()
	}
	select {
	case <-c.pod.Done():
	default:
		rctx, cancel := context.WithTimeout(ctx, removeTimeout)
		if _, err := c.agent.RemoveContainer(rctx, &api.RemoveContainerRequest{ContainerId: c.ID}); err != nil {
			log.G(ctx).WithError(err).WithField("container", c.ID).Warn("remove container in the guest")
		}
		cancel()
	}
	c.unmount(ctx)
}

// Detach takes the container out of the host side only: the stdio relays
// stop and its rootfs and shares leave the VM's share. The guest's copy
// (its runc state, bundle and cgroup) is left to the VM's end: for the last
// container of a VM about to be destroyed, the guest's runc delete is work
// nobody waits on.
func (c *Container) Detach(ctx context.Context) {
	for _, p := range c.Processes() {
		p.CloseRelay()
	}
	c.unmount(ctx)
}

func (c *Container) unmount(ctx context.Context) {
	if err := c.pod.UnmountRootfs(c.ID); err != nil {
		log.G(ctx).WithError(err).WithField("container", c.ID).Warn("unmount container rootfs")
	}
}

// AddExec registers an exec (containerd's Exec); StartExec runs it. It
// reports false, adding nothing, if execID is empty or taken.
func (c *Container) AddExec(execID string, streams stdio.Streams, processSpec []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.execs[execID]; dup || execID == "" {
		return false
	}
	p := newProcess(c.ID, execID, streams)
	// The process spec travels as JSON, as containerd encodes it.
	p.execSpec = processSpec
	c.execs[execID] = p
	return true
}

// StartExec runs exec p in the guest (runc exec) and starts relaying its
// stdio; if the relay cannot start, the process is killed.
func (c *Container) StartExec(ctx context.Context, p *Process) error {
	s := p.streams
	p.started.Begin = time.Now()
	_, err := c.agent.ExecProcess(ctx, &api.ExecProcessRequest{
		ContainerId: p.containerID, ExecId: p.execID, Process: p.execSpec,
		Stdin: s.Stdin != "", Stdout: s.Stdout != "", Stderr: s.Stderr != "", Terminal: s.Terminal,
	})
	if err != nil {
		return fmt.Errorf("exec %s in container %s: %w", p.execID, p.containerID, err)
	}
	p.started.ExecAnswered = time.Now()
	relay, err := stdio.Start(ctx, c.agent, p.containerID, p.execID, s)
	if err != nil {
		c.agent.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: p.containerID, ExecId: p.execID, Signal: 9})
		return err
	}
	p.setRelay(relay)
	p.started.RelayStarted = time.Now()
	return nil
}

// DeleteExec forgets exec p: its relay stops, an exit is recorded if none
// was, and the agent frees the exec id and its stdio in the guest.
func (c *Container) DeleteExec(ctx context.Context, p *Process) {
	p.CloseRelay()
	p.SetExited(ExitStatusUnknown, time.Now())
	if _, err := c.agent.RemoveProcess(ctx, &api.RemoveProcessRequest{ContainerId: c.ID, ExecId: p.execID}); err != nil && !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		log.G(ctx).WithError(err).WithField("exec", p.execID).Debug("remove exec in the guest")
	}
	c.mu.Lock()
	delete(c.execs, p.execID)
	c.mu.Unlock()
}
