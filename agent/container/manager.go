// Package container runs the pod's containers in the guest with an OCI
// runtime binary, runc or crun (through go-runc), and keeps, for each, its processes (the init and
// any exec processes): pid, stdio and exit status. It also reads the
// containers' cgroups for stats, OOM kills and updates.
//
// A container moves created → running → stopped → removed; docs/agent.md
// has the table of which call moves it. Exit statuses come from the agent's
// reaper, never from waiting on a pid directly, because the agent (PID 1 or
// a subreaper) is the parent of every orphaned container init.
package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/cgroup"
	"github.com/podvm/podvm/agent/oom"
)

// Config says where the OCI runtimes and the containers' files live.
type Config struct {
	// Runc is the runc binary: the runtime unless SetRuntime chose another.
	Runc string
	// Crun is the crun binary.
	Crun string
	// StateDir is the OCI runtime's --root: its per-container state.
	StateDir string
	// BundleDir holds one bundle directory per container.
	BundleDir string
	// OwnsNetwork is set when the agent's network namespace is the pod's
	// (the agent is the VM's PID 1): then net.* sysctls of a container that
	// shares it are applied to it here, because runc refuses them for a
	// container without a network namespace of its own.
	OwnsNetwork bool
	// SealRuntime is set when the agent is the VM's PID 1: then it may
	// mount a read-only copy of crun over crun when crun is chosen
	// (sealCrun), kept on a ramfs at SealDir.
	SealRuntime bool
	SealDir     string
	// NativeSandbox: a CRI pod's sandbox (pause) container whose spec the
	// agent covers is created by the agent itself, not the OCI runtime
	// (native.go, docs/agent.md "The native sandbox").
	NativeSandbox bool
	// CgroupRoot is where cgroup v2 is mounted; "" is cgroup.Mountpoint.
	CgroupRoot string
	// Self is the agent's binary, which the native pause re-executes; ""
	// is /proc/self/exe.
	Self string
}

// GuestConfig is the layout inside the pod VM.
var GuestConfig = Config{
	Runc:      "/usr/bin/runc",
	Crun:      "/usr/bin/crun",
	StateDir:  "/run/podvm/runc",
	BundleDir: "/run/podvm/containers",
	SealDir:   "/run/podvm/sealed",
}

// CreateRequest is what CreateContainer asks for.
type CreateRequest struct {
	ID string
	// Spec is the OCI config.json, already rewritten for the guest.
	Spec []byte
	Stdio
}

// Manager owns the guest's containers.
type Manager struct {
	cfg Config
	oom *oom.Watcher

	runtime    ociRuntime // guarded by mu
	crunSealed bool       // guarded by mu
	mu         sync.Mutex
	containers map[string]*Container
	creating   map[string]struct{}
	byPid      map[int]*Process
	// While runc calls that start processes are in flight, exits of pids
	// no process claims yet are kept: a process may die before the call
	// that started it has read its pid file.
	spawns int
	early  map[int]runc.Exit

	warm sync.Once // Warm
}

// NewManager returns a Manager that learns about exited processes from
// exits, a subscription to the agent's reaper, which it drains until the
// channel is closed.
func NewManager(cfg Config, exits <-chan runc.Exit) *Manager {
	rt, _ := runtimeFor(cfg, contract.OCIRuntimeRunc)
	m := &Manager{
		cfg:        cfg,
		runtime:    rt,
		oom:        oom.NewWatcher(),
		containers: make(map[string]*Container),
		creating:   make(map[string]struct{}),
		byPid:      make(map[int]*Process),
		early:      make(map[int]runc.Exit),
	}
	go m.watchExits(exits)
	return m
}

// Create runs `<runtime> create` for the container: its init exists, stopped
// before the user's process, until Start.
func (m *Manager) Create(ctx context.Context, r CreateRequest) (*Container, error) {
	if err := checkID(r.ID); err != nil {
		return nil, err
	}
	m.mu.Lock()
	_, exists := m.containers[r.ID]
	_, inFlight := m.creating[r.ID]
	if exists || inFlight {
		m.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	m.creating[r.ID] = struct{}{}
	m.spawns++
	rt := m.runtime
	m.mu.Unlock()

	c, err := m.create(ctx, r, rt)

	m.mu.Lock()
	delete(m.creating, r.ID)
	if err == nil {
		m.containers[r.ID] = c
	}
	m.mu.Unlock()
	if err != nil {
		m.spawned(nil)
		return nil, err
	}
	m.spawned(c.init)
	return c, nil
}

func (m *Manager) create(ctx context.Context, r CreateRequest, rt ociRuntime) (_ *Container, retErr error) {
	marks := []Mark{MarkNow(contract.MarkCreateBegin)}
	// The runtime must not be killed half-way because the caller hung up.
	ctx = context.WithoutCancel(ctx)
	bundle := filepath.Join(m.cfg.BundleDir, r.ID)
	spec, err := guestSpec(r.ID, r.Spec, r.Terminal)
	if err != nil {
		return nil, err
	}
	reason := nativeReason(m.cfg, spec, r.Stdio)
	if reason == "" {
		return m.createNative(ctx, r, spec, marks)
	}
	if spec.Annotations[annotationContainerType] == "sandbox" {
		log.G(ctx).Debugf("sandbox container %s goes through %s: %s", r.ID, rt.name, reason)
	}
	c := newContainer(m, r.ID, bundle, rt)
	err = writeSpec(bundle, r.ID, spec, bundleOptions{
		terminal: r.Terminal, ownsNetwork: m.cfg.OwnsNetwork, specVersion: rt.specVersion, personality: rt.personality, cpu: &c.cpu,
	})
	if err != nil {
		return nil, err
	}
	c.poststartHooks = hasPoststartHooks(spec)
	marks = append(marks, MarkNow(contract.MarkBundleWritten))
	defer func() {
		if retErr != nil {
			_ = c.runc.Delete(ctx, r.ID, &runc.DeleteOpts{Force: true})
			_ = os.RemoveAll(bundle)
		}
	}()
	pidFile := filepath.Join(bundle, "init.pid")
	s, pid, err := spawn(r.Stdio, pidFile, func(io runc.IO, console runc.ConsoleSocket) error {
		return c.runc.Create(ctx, r.ID, bundle, &runc.CreateOpts{PidFile: pidFile, IO: io, ConsoleSocket: console})
	})
	if err != nil {
		return nil, runcError(fmt.Errorf("create container %s: %w", r.ID, err), c.logPath())
	}
	marks = append(marks, MarkNow(contract.MarkRuntimeCreated))
	c.cgroup = locateCgroup(r.ID, pid, spec.Linux.CgroupsPath)
	if err := c.cpu.settle(c.cgroup, func(own *specs.LinuxResources) error { return c.runc.Update(ctx, r.ID, own) }); err != nil {
		s.close()
		return nil, runcError(fmt.Errorf("create container %s: %w", r.ID, err), c.logPath())
	}
	c.init = newProcess(c, "", pid, s)
	m.watchOOM(ctx, c)
	c.marks = append(marks, MarkNow(contract.MarkCreateEnd))
	return c, nil
}

// watchOOM counts the OOM kills of the container's cgroup from now on.
func (m *Manager) watchOOM(ctx context.Context, c *Container) {
	if !c.cgroup.Known() {
		return
	}
	base, err := m.oom.Add(c.id, c.cgroup)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("container %s: OOM kills in cgroup %s cannot be counted", c.id, c.cgroup)
	}
	c.init.oomBase = base
}

// locateCgroup finds the container's cgroup from the spec's path, and from
// its init only for a relative path (cgroup.Locate). Without it the
// container runs, but has no stats, no OOM events and no cleanup of its
// leftover processes.
func locateCgroup(id string, pid int, specPath string) cgroup.Cgroup {
	cg, err := cgroup.Locate(specPath, pid)
	if err != nil {
		log.L.WithError(err).Warnf("container %s: cgroup unknown", id)
		return cgroup.Cgroup{}
	}
	return cg
}

// NextOOM blocks until a container's cgroup records an OOM kill, or ctx
// ends, and returns the container's ID. Events come in the order the kills
// were seen; each is queued before WaitProcess reports the exit of a
// process the kill ended.
func (m *Manager) NextOOM(ctx context.Context) (string, error) {
	return m.oom.Next(ctx)
}

// Get returns a created container.
func (m *Manager) Get(id string) (*Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Remove deletes a created or stopped container: its runc state, cgroup and
// bundle. A running container must be signalled and waited for first.
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if err := c.remove(ctx, false); err != nil {
		return err
	}
	m.forget(c)
	return nil
}

// Shutdown kills and removes every container, for DestroySandbox.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	all := make([]*Container, 0, len(m.containers))
	for _, c := range m.containers {
		all = append(all, c)
	}
	m.mu.Unlock()

	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, c := range all {
		wg.Go(func() {
			if err := c.remove(ctx, true); err != nil && !errdefs.IsNotFound(err) {
				errs[i] = err
				return
			}
			m.forget(c)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// forget drops a removed container from the table and stops watching it.
func (m *Manager) forget(c *Container) {
	m.oom.Remove(c.id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.containers[c.id] == c {
		delete(m.containers, c.id)
	}
	for _, p := range append(c.execList(), c.init) {
		if m.byPid[p.pid] == p {
			delete(m.byPid, p.pid)
		}
	}
}
