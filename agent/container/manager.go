// Package container runs the pod's containers in the guest with the runc
// binary (through go-runc) and keeps, for each, its init process: pid, stdio
// and exit status.
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
)

// Config says where runc and the containers' files live.
type Config struct {
	// Runc is the runc binary.
	Runc string
	// StateDir is runc's --root: its per-container state.
	StateDir string
	// BundleDir holds one bundle directory per container.
	BundleDir string
}

// GuestConfig is the layout inside the pod VM.
var GuestConfig = Config{
	Runc:      "/usr/bin/runc",
	StateDir:  "/run/podvm/runc",
	BundleDir: "/run/podvm/containers",
}

// CreateRequest is what CreateContainer asks for.
type CreateRequest struct {
	ID string
	// Spec is the OCI config.json, already rewritten for the guest.
	Spec                            []byte
	Stdin, Stdout, Stderr, Terminal bool
}

// Manager owns the guest's containers.
type Manager struct {
	cfg Config

	mu         sync.Mutex
	containers map[string]*Container
	creating   map[string]struct{}
	byPid      map[int]*Process
	// While creates are in flight, exits of pids no container claims yet
	// are kept: a container's init may die before its create learns its
	// pid from runc's pid file.
	creates int
	early   map[int]runc.Exit
}

// NewManager returns a Manager that learns about exited processes from
// exits, a subscription to the agent's reaper, which it drains until the
// channel is closed.
func NewManager(cfg Config, exits <-chan runc.Exit) *Manager {
	m := &Manager{
		cfg:        cfg,
		containers: make(map[string]*Container),
		creating:   make(map[string]struct{}),
		byPid:      make(map[int]*Process),
		early:      make(map[int]runc.Exit),
	}
	go m.watchExits(exits)
	return m
}

func (m *Manager) watchExits(exits <-chan runc.Exit) {
	for e := range exits {
		m.mu.Lock()
		p, ok := m.byPid[e.Pid]
		if ok {
			delete(m.byPid, e.Pid)
		} else if m.creates > 0 {
			m.early[e.Pid] = e
		}
		m.mu.Unlock()
		if ok {
			p.setExited(e)
		}
	}
}

// Create runs `runc create` for the container: its init exists, stopped
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
	m.creates++
	m.mu.Unlock()

	c, err := m.create(ctx, r)

	m.mu.Lock()
	delete(m.creating, r.ID)
	m.creates--
	var early *runc.Exit
	if err == nil {
		m.containers[r.ID] = c
		if e, ok := m.early[c.init.pid]; ok {
			early = &e
		} else {
			m.byPid[c.init.pid] = c.init
		}
	}
	if m.creates == 0 {
		clear(m.early)
	}
	m.mu.Unlock()
	if early != nil {
		c.init.setExited(*early)
	}
	return c, err
}

func (m *Manager) create(ctx context.Context, r CreateRequest) (_ *Container, retErr error) {
	// runc must not be killed half-way because the caller hung up.
	ctx = context.WithoutCancel(ctx)
	bundle := filepath.Join(m.cfg.BundleDir, r.ID)
	if _, err := writeBundle(bundle, r.ID, r.Spec, r.Terminal); err != nil {
		return nil, err
	}
	c := newContainer(m, r.ID, bundle)
	defer func() {
		if retErr != nil {
			_ = c.runc.Delete(ctx, r.ID, &runc.DeleteOpts{Force: true})
			_ = os.RemoveAll(bundle)
		}
	}()

	opts := &runc.CreateOpts{PidFile: filepath.Join(bundle, "init.pid")}
	var s *stdio
	if r.Terminal {
		socket, err := runc.NewTempConsoleSocket()
		if err != nil {
			return nil, fmt.Errorf("console socket for container %s: %w", r.ID, err)
		}
		defer socket.Close()
		opts.ConsoleSocket = socket
		p, err := newProcIO()
		if err != nil {
			return nil, err
		}
		defer p.Close()
		opts.IO = p
		if err := c.runc.Create(ctx, r.ID, bundle, opts); err != nil {
			return nil, runcError(fmt.Errorf("create container %s: %w", r.ID, err), c.logPath())
		}
		master, err := socket.ReceiveMaster()
		if err != nil {
			return nil, fmt.Errorf("receive terminal of container %s: %w", r.ID, err)
		}
		if s, err = newTerminalStdio(master, r.Stdin); err != nil {
			return nil, fmt.Errorf("terminal of container %s: %w", r.ID, err)
		}
	} else {
		var (
			p   *procIO
			err error
		)
		if s, p, err = newStdio(r.Stdin, r.Stdout, r.Stderr); err != nil {
			return nil, fmt.Errorf("stdio of container %s: %w", r.ID, err)
		}
		defer p.Close()
		opts.IO = p
		if err := c.runc.Create(ctx, r.ID, bundle, opts); err != nil {
			s.close()
			return nil, runcError(fmt.Errorf("create container %s: %w", r.ID, err), c.logPath())
		}
	}
	pid, err := runc.ReadPidFile(opts.PidFile)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("pid of container %s: %w", r.ID, err)
	}
	c.init = newProcess(c, pid, s)
	return c, nil
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

// forget drops a removed container from the table.
func (m *Manager) forget(c *Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.containers[c.id] == c {
		delete(m.containers, c.id)
	}
	if m.byPid[c.init.pid] == c.init {
		delete(m.byPid, c.init.pid)
	}
}
