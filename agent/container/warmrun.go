package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// WarmID is the first throwaway container WarmRuntime runs and removes,
// the pod's sandbox (pause) container's stand-in; WarmAppID, the second,
// joins its namespaces as an app container joins the pause's.
const (
	WarmID    = "podvm-warm-runtime"
	WarmAppID = WarmID + "-app"
)

// warmExecID is the app stand-in's exec process.
const warmExecID = "warm-exec"

// warmWait bounds each of the warm-up's waits for a process's exit.
const warmWait = 30 * time.Second

// WarmRuntime chooses the OCI runtime name (as SetRuntime) and takes two
// throwaway containers through the steps a CRI pod's take, with the same
// code: bundle, runtime create (namespaces, the second joining the
// first's, cgroup, devices, seccomp, mounts), OOM watch, start (the exec
// fifo), an exec, kills, the waits for the exits, deletes. So a claimed
// VM's first containers do not run any of that code, the runtime's and the
// guest kernel's, for the first time (docs/agent.md, "Warming the
// runtime"). Their program is the agent's own binary (WarmMain). It leaves
// nothing: no bundle, runtime state, cgroup or process, also when a step
// fails.
func (m *Manager) WarmRuntime(ctx context.Context, name string) error {
	if err := m.SetRuntime(name); err != nil {
		return err
	}
	self, err := m.cfg.selfBinary()
	if err != nil {
		return fmt.Errorf("warm the OCI runtime: the agent's binary: %w", err)
	}
	for _, id := range []string{WarmID, WarmAppID} {
		if _, err := m.Get(id); err == nil {
			return fmt.Errorf("warm the OCI runtime: an earlier warm-up's container %s is still there: %w", id, errdefs.ErrFailedPrecondition)
		}
	}
	steps := warmSteps{begin: time.Now(), fields: log.Fields{}}
	pause, err := m.warmStart(ctx, WarmID, "pause", warmContainerSpec(self, nil), &steps)
	if err != nil {
		return fmt.Errorf("warm the OCI runtime %s: %w", m.Runtime(), err)
	}
	err = m.warmApp(ctx, self, pause, &steps)
	if err == nil {
		err = warmKill(ctx, pause)
	}
	if err != nil {
		m.discard(ctx, pause)
		return fmt.Errorf("warm the OCI runtime %s: %w", m.Runtime(), err)
	}
	if err := m.Remove(ctx, WarmID); err != nil {
		return fmt.Errorf("warm the OCI runtime %s: %w", m.Runtime(), err)
	}
	steps.mark("pause_kill_remove")
	log.G(ctx).WithFields(steps.fields).Infof("warmed the OCI runtime %s", m.Runtime())
	return nil
}

// warmApp runs the app stand-in in pause's namespaces: create, start, an
// exec waited for, a kill waited for, remove.
func (m *Manager) warmApp(ctx context.Context, self string, pause *Container, steps *warmSteps) error {
	app, err := m.warmStart(ctx, WarmAppID, "app", warmContainerSpec(self, pause), steps)
	if err != nil {
		return err
	}
	err = warmExec(ctx, app)
	steps.mark("app_exec")
	if err == nil {
		err = warmKill(ctx, app)
	}
	if err != nil {
		m.discard(ctx, app)
		return err
	}
	if err := m.Remove(ctx, WarmAppID); err != nil {
		return err
	}
	steps.mark("app_kill_remove")
	return nil
}

// warmStart makes id's bundle and root, creates the container and starts
// it, timing the steps under label. A failure leaves nothing of it.
func (m *Manager) warmStart(ctx context.Context, id, label string, spec *specs.Spec, steps *warmSteps) (*Container, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	// Until the runtime has the container, the bundle is only ours; after,
	// Remove (or discard, or DestroySandbox) removes it.
	bundle := filepath.Join(m.cfg.BundleDir, id)
	if err := makeWarmRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		_ = os.RemoveAll(bundle)
		return nil, err
	}
	c, err := m.Create(ctx, CreateRequest{ID: id, Spec: raw})
	if err != nil {
		_ = os.RemoveAll(bundle)
		return nil, err
	}
	steps.mark(label + "_create")
	if err := c.Start(ctx); err != nil {
		m.discard(ctx, c)
		return nil, err
	}
	steps.mark(label + "_start")
	return c, nil
}

// warmExec runs an exec in c and waits for it to exit 0.
func warmExec(ctx context.Context, c *Container) error {
	proc, err := json.Marshal(warmProcess(warmExitArg))
	if err != nil {
		return err
	}
	if err := c.Exec(ctx, ExecRequest{ID: warmExecID, Process: proc}); err != nil {
		return err
	}
	return waitWarm(ctx, c, warmExecID, 0)
}

// warmKill kills c's init, which must still be running (its program
// lived under the container's seccomp filter), and waits for its exit.
func warmKill(ctx context.Context, c *Container) error {
	init, err := c.Process("")
	if err != nil {
		return err
	}
	if err := init.Signal(ctx, syscall.SIGKILL, false); err != nil {
		return fmt.Errorf("kill the init of %s: %w", c.id, err)
	}
	return waitWarm(ctx, c, "", 128+int(syscall.SIGKILL))
}

// waitWarm waits for c's process execID to exit with status want.
func waitWarm(ctx context.Context, c *Container, execID string, want int) error {
	p, err := c.Process(execID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, warmWait)
	defer cancel()
	exit, err := p.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait for %s: %w", p.name(), err)
	}
	if exit.Status != want {
		return fmt.Errorf("%s exited %d, want %d", p.name(), exit.Status, want)
	}
	return nil
}

// discard kills and removes a warm-up container whose lifecycle failed.
func (m *Manager) discard(ctx context.Context, c *Container) {
	if err := c.remove(context.WithoutCancel(ctx), true); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).Warnf("remove the warm-up container %s", c.id)
	}
	m.forget(c)
}

// warmSteps times the warm-up's steps for its log line.
type warmSteps struct {
	begin  time.Time
	fields log.Fields
}

func (s *warmSteps) mark(step string) {
	now := time.Now()
	s.fields[step] = now.Sub(s.begin).Round(time.Millisecond)
	s.begin = now
}

// selfBinary is the agent's binary as a path the OCI runtime can bind:
// /proc/self/exe would be the runtime's own.
func (cfg Config) selfBinary() (string, error) {
	if cfg.Self != "" {
		return cfg.Self, nil
	}
	return os.Executable()
}
