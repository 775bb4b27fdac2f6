package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/factory"
)

// Down implements cluster.Provider: it stops every component (the
// kubelet first, then every pod, so each pod VM is torn down by its shim),
// undoes each change Up made to the host, and removes the state directory
// but its logs.
func (p *Provider) Down(ctx context.Context, out io.Writer) error {
	s, ok := p.loadState()
	if !ok {
		fmt.Fprintf(out, "==> no local cluster in %s\n", p.opts.Dir)
		return nil
	}
	step := func(format string, a ...any) { fmt.Fprintf(out, "==> "+format+"\n", a...) }
	errs := p.stopAll(ctx, step)
	if !p.opts.WithoutPodvmHandler {
		if err := p.cleanFactory(s, step); err != nil {
			errs = append(errs, err)
		}
	}
	step("removing bridge %s, /etc/hosts entry and iptables chains", s.Bridge)
	errs = append(errs, p.undoHostChanges(s)...)
	if len(errs) == 0 {
		// Keep logs/ for whoever debugs the run; everything else goes.
		entries, _ := os.ReadDir(p.opts.Dir)
		for _, e := range entries {
			if e.Name() != "logs" {
				if err := os.RemoveAll(filepath.Join(p.opts.Dir, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
		step("cluster down; logs kept in %s", filepath.Join(p.opts.Dir, "logs"))
	}
	return errors.Join(errs...)
}

// stopAll stops the kubelet, removes every pod, stops the other components
// in reverse start order and kills shims left behind.
func (p *Provider) stopAll(ctx context.Context, step stepf) []error {
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	step("stopping the kubelet")
	fail(stopDaemon(p.l, "kubelet", 20*time.Second))
	if pid, _ := daemonPID(p.l, "containerd"); pid != 0 {
		step("removing every pod (each pod VM is torn down by its shim)")
		fail(p.removeAllPods(ctx))
	}
	for i := len(components) - 1; i >= 0; i-- {
		if c := components[i]; c != "kubelet" {
			step("stopping %s", c)
			fail(stopDaemon(p.l, c, 20*time.Second))
		}
	}
	killed, err := p.killOrphanShims()
	fail(err)
	if len(killed) > 0 {
		step("removing what the killed shims left (VMs, mounts, taps, cgroups)")
		fail(p.sweepSandboxes(ctx, killed))
	}
	fail(p.cleanTemplates(step))
	return errs
}

// cleanTemplates stops the VM templates' holders and removes the templates
// the podvm-template class's pods made (podvm factory clean): a holder
// outlives the pods by design, and a cluster that is down keeps nothing
// running.
func (p *Provider) cleanTemplates(step stepf) error {
	eff, err := config.Resolve(p.opts.podvmTemplateConfig(), p.opts.shim())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("podvm config of class %s, to find its VM templates: %w", TemplateClass, err)
	}
	removed, err := factory.Templates{Dir: eff.Config.Factory.TemplateDir}.Clean()
	if len(removed) > 0 {
		step("stopped the holders of and removed VM templates %s", strings.Join(removed, ", "))
	}
	return err
}

// undoHostChanges unmounts what is left under the state directory and
// removes the cgroups, bridge, /etc/hosts line, config link and iptables
// chains Up added (as its saved state records them).
func (p *Provider) undoHostChanges(s state) []error {
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if _, failed := hostbed.UnmountAll(p.opts.Dir); len(failed) > 0 {
		fail(fmt.Errorf("unmount: %s", strings.Join(failed, "; ")))
	}
	cgroups := s.CgroupRoots
	for d, existed := range s.CgroupsBefore {
		if !existed {
			cgroups = append(cgroups, d)
		}
	}
	fail(hostbed.RemoveCgroupDirs(cgroups, 0))
	fail(hostbed.DeleteBridge(s.Bridge))
	if removed, err := hostbed.RemoveCNIResults(cniConfig(p.l, s).Name); len(removed) > 0 || err != nil {
		fail(errors.Join(fmt.Errorf("removed CNI results of pods never torn down: %s", strings.Join(removed, ", ")), err))
	}
	fail(removeHostsLine(s.HostsLine))
	fail(p.unlinkNodeContainerdConfig(s))
	if s.ChainsBefore != nil {
		_, err := clusterChains.RemoveNew(s.ChainsBefore)
		fail(err)
	}
	return errs
}

// removeAllPods stops and removes every pod through CRI, as the kubelet
// would, so that CNI DEL runs and each shim tears its VM down.
func (p *Provider) removeAllPods(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	crictl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, p.opts.Crictl, append([]string{"--runtime-endpoint", p.l.criEndpoint(), "--image-endpoint", p.l.criEndpoint(), "--timeout", "2m"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := crictl("rm", "--all", "--force"); err != nil {
		return err
	}
	return crictl("rmp", "--all", "--force")
}

// killOrphanShims kills shims of our containerd still running after it
// stopped (a shim outlives containerd by design): they hold VMs. It
// returns the pids it killed.
func (p *Provider) killOrphanShims() ([]int, error) {
	sock := p.l.containerdSocket()
	var pids []int
	var killed []string
	for _, shim := range hostbed.Processes(func(pr hostbed.Process) bool {
		return strings.HasPrefix(pr.Exe, "containerd-shim") && strings.Contains(strings.Join(pr.Cmdline, "\x00"), sock)
	}) {
		if proc, err := os.FindProcess(shim.Pid); err == nil && proc.Kill() == nil {
			pids = append(pids, shim.Pid)
			killed = append(killed, fmt.Sprintf("%s (pid %d)", shim.Exe, shim.Pid))
		}
	}
	if len(killed) > 0 {
		return pids, fmt.Errorf("killed shims left after containerd stopped (pods were not removed cleanly): %s", strings.Join(killed, ", "))
	}
	return nil, nil
}

// sweepSandboxes waits for the killed shims to be gone and then does what
// the next shim on this host would do at its start (crash.Sweep): removes
// the sandboxes no live shim holds, with their VMs, mounts, taps and
// cgroups. A sandbox whose shim is alive, of another containerd on this
// host, holds its lock and is left alone, as is one made in the last
// seconds (crash.Sweep's rule).
func (p *Provider) sweepSandboxes(ctx context.Context, shims []int) error {
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range shims {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	eff, err := config.Resolve(p.opts.podvmConfig(), p.opts.shim())
	if err != nil {
		return fmt.Errorf("podvm config of the cluster, to find its sandboxes: %w", err)
	}
	swept := crash.Sweep(ctx, filepath.Dir(sandbox.StateDir(eff.Config, "x")))
	// The podvm-cache class keeps its sandboxes under a state_dir of its own.
	if cfg, err := p.opts.cacheConfig(); err == nil {
		swept = append(swept, crash.Sweep(ctx, filepath.Dir(sandbox.StateDir(cfg, "x")))...)
	}
	if len(swept) > 0 {
		return fmt.Errorf("removed sandboxes of killed shims: %s", strings.Join(swept, ", "))
	}
	return nil
}
