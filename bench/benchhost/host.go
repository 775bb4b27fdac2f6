package benchhost

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podvm/podvm/bench/procmem"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/internal/hostbed"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/sandbox/factory"
)

// StateDir is the podvm state directory of the benchmark's pod VMs, apart
// from the installed configuration's (a cluster or test may use that one
// meanwhile). Short: QEMU's sockets live below it, and a unix socket's
// path has at most 107 bytes.
const StateDir = "/run/podvm-bench"

// CtrNamespace is where `ctr run` containers of the benchmark live.
const CtrNamespace = "podvm-bench"

// Options configure Start.
type Options struct {
	Tools *Tools
	// Debug runs containerd (and so the shims) at debug log level.
	Debug bool
	// Progress receives one line per step.
	Progress io.Writer
	// Keep leaves the work directory (logs, configs) in place.
	Keep bool
	// FactoryModes are the podvm factory modes measured, each with a CRI
	// handler of its own (PodvmHandler); empty: DefaultFactoryModes.
	FactoryModes []string
	// CacheSize is the cache mode's pool (factory.cache_size); 0:
	// DefaultCacheSize.
	CacheSize int
}

// Host is a started bench host. Close it.
type Host struct {
	Tools *Tools
	// Dir is the work directory: containerd's root, state, sockets and
	// log, the pod logs, the CNI configuration.
	Dir string
	// PodvmConfig is the podvm configuration the handler uses (the
	// installed one with StateDir), and Config its parsed form.
	PodvmConfig string
	Config      *config.Config
	// PodvmConfigs are the podvm handlers' configurations by handler: the
	// installed one (with StateDir) with each factory mode set.
	PodvmConfigs map[string]string
	// Handlers are the CRI runtime handlers: runc and one podvm handler
	// per factory mode (gVisor runs through ctr only: see stackOptions).
	Handlers []string
	// FirstPods are the template modes' first pods, timed apart.
	FirstPods []FirstPod

	opts       Options
	cacheD     *cacheDaemon // the cache mode's `podvm factory serve`
	cgroupRoot string
	stack      *hostbed.Stack
	cri        *cri
	tapsBefore map[string]bool

	mu  sync.Mutex
	ids []string // every pod and container id created, for the leak check
}

// Start brings the host up: registry, network, containerd, images. On
// error everything started is stopped again.
func Start(ctx context.Context, o Options) (_ *Host, retErr error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if len(o.FactoryModes) == 0 {
		o.FactoryModes = DefaultFactoryModes
	}
	if err := checkFactoryModes(o.FactoryModes); err != nil {
		return nil, err
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if leftovers := stateLeftovers(); len(leftovers) > 0 {
		return nil, fmt.Errorf("%s holds sandboxes of an earlier run (%s): remove them (and their processes and mounts) first",
			StateDir, strings.Join(leftovers, ", "))
	}
	// Short: containerd's sockets live here.
	dir, err := os.MkdirTemp("", "podvm-bench-")
	if err != nil {
		return nil, err
	}
	h := &Host{Tools: o.Tools, Dir: dir, opts: o, Handlers: []string{"runc"},
		cgroupRoot: fmt.Sprintf("/podvm-bench-%d", os.Getpid()), tapsBefore: hostTaps()}
	defer func() {
		if retErr != nil {
			if leaks := h.Close(context.WithoutCancel(ctx)); len(leaks) > 0 {
				retErr = fmt.Errorf("%w; left behind: %s", retErr, strings.Join(leaks, "; "))
			}
		}
	}()
	h.step("work directory %s", dir)
	if err := h.writePodvmConfig(); err != nil {
		return nil, err
	}
	if err := h.startStack(); err != nil {
		return nil, err
	}
	if err := h.pullImages(ctx); err != nil {
		return nil, err
	}
	h.step("images pulled from the local registry")
	h.warmTemplates(ctx)
	if err := h.startCacheDaemon(ctx); err != nil {
		return nil, err
	}
	return h, ctx.Err()
}

func (h *Host) step(format string, args ...any) {
	fmt.Fprintf(h.opts.Progress, "==> "+format+"\n", args...)
}

// writePodvmConfig writes the installed podvm configuration with StateDir,
// and from it one configuration per factory mode.
func (h *Host) writePodvmConfig() error {
	installed, err := os.ReadFile(h.Tools.PodvmConfig)
	if err != nil {
		return err
	}
	cfgText, err := config.WithStateDir(installed, StateDir)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Tools.PodvmConfig, err)
	}
	h.PodvmConfig = filepath.Join(h.Dir, "podvm.toml")
	if err := os.WriteFile(h.PodvmConfig, cfgText, 0o644); err != nil {
		return err
	}
	if h.Config, err = config.Load(h.PodvmConfig); err != nil {
		return err
	}
	return h.writeModeConfigs(cfgText)
}

// startStack starts the registry serving the test images (busybox, the
// pause image), the pod network and containerd, and dials CRI.
func (h *Host) startStack() error {
	images, err := hostbed.BuildCritestImages(h.Tools.Busybox, h.Tools.Testbin, h.Dir)
	if err != nil {
		return err
	}
	if h.stack, err = hostbed.StartStack(stackOptions(h.Dir, h.Tools, h.podvmStackHandlers(), images, h.opts.Debug)); err != nil {
		return err
	}
	h.step("image registry on %s", h.stack.Registry.Addr)
	h.step("pod network %s on bridge %s", h.stack.Network.Subnet, h.stack.Network.Bridge)
	h.step("containerd %s with CRI handlers %s (log %s)", ContainerdVersion, strings.Join(h.Handlers, ", "), h.LogPath())
	h.cri, err = dialCRI(h.stack.Address)
	return err
}

// pullImages pulls the pods' images through CRI, and busybox for `ctr run`.
func (h *Host) pullImages(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for _, ref := range []string{BusyboxImage, WebImage, hostbed.SandboxImage} {
		if err := h.cri.pull(ctx, ref); err != nil {
			return err
		}
	}
	if out, err := h.Ctr(ctx, "images", "pull", "--hosts-dir", h.stack.CertsDir, BusyboxImage).CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images pull %s: %w: %s", BusyboxImage, err, out)
	}
	return nil
}

// Ctr is a ctr command on the host's containerd, in CtrNamespace.
func (h *Host) Ctr(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--address", h.stack.Address, "--namespace", CtrNamespace}, args...)
	return exec.CommandContext(ctx, h.Tools.Ctr, full...)
}

// LogPath is containerd's log, which carries the shims' log lines.
func (h *Host) LogPath() string { return h.stack.Containerd.LogPath }

// track remembers an id the leak check looks for in process lists.
func (h *Host) track(id string) {
	h.mu.Lock()
	h.ids = append(h.ids, id)
	h.mu.Unlock()
}

// Track remembers the id of a container made outside CRI (`ctr run`) for
// the leak check.
func (h *Host) Track(id string) { h.track(id) }

// Close removes every pod, stops everything Start started and returns
// what was left behind (empty when the host is as it was). It is safe on
// a partly started host.
func (h *Host) Close(ctx context.Context) (leaks []string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if h.cri != nil {
		if err := h.removeAllPods(ctx); err != nil {
			leaks = append(leaks, err.Error())
		}
		leaks = append(leaks, h.criLeaks(ctx)...)
		h.cri.conn.Close()
	}
	if h.stack != nil {
		h.stack.Containerd.Stop(containerdGrace)
	}
	leaks = append(leaks, h.stopCacheDaemon()...)
	// A VM template's holder outlives the pods by design (package hold):
	// the bench host ends its templates' holders as `podvm factory clean`
	// does, and only what is left after that is a leak.
	if _, err := (factory.Templates{Dir: h.TemplateDir()}).Clean(); err != nil {
		leaks = append(leaks, "VM templates: "+err.Error())
	}
	// What a shim would have removed: give exiting processes a moment.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.processLeaks()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	procs := h.processLeaks()
	for _, p := range procs {
		leaks = append(leaks, fmt.Sprintf("process %d: %s", p.Pid, hostbed.Truncate(p.Cmdline(), 160)))
		// Started by this host's containerd: ended here, by pid.
		syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	for _, mp := range hostbed.MountsUnder(h.Dir, StateDir) {
		// runsc keeps an empty network namespace for sandboxes without
		// networking bind-mounted in its root, for every later sandbox:
		// the bench's own runc root is removed with it, not a leak.
		if !strings.HasPrefix(mp, RuncRoot(h.Dir)+"/") || filepath.Base(mp) != "null-netns" {
			leaks = append(leaks, "mount: "+mp)
		}
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	leaks = append(leaks, stateLeftovers()...)
	for tap := range hostTaps() {
		if !h.tapsBefore[tap] {
			leaks = append(leaks, "podvm tap in the host network namespace: "+tap)
		}
	}
	if h.stack != nil {
		if h.stack.Network != nil {
			leaks = append(leaks, h.stack.Network.Leaks()...)
		}
		if err := h.stack.Stop(containerdGrace); err != nil {
			leaks = append(leaks, err.Error())
		}
	}
	if err := hostbed.RemoveCgroupTree(h.cgroupRoot, 2*time.Second); err != nil {
		leaks = append(leaks, err.Error())
	}
	if !h.opts.Keep && len(leaks) == 0 {
		os.RemoveAll(h.Dir)
	} else {
		h.step("work directory kept: %s", h.Dir)
	}
	return leaks
}

// processLeaks lists live processes that belong to this host: by its
// directories on their command line (shims, QEMU, virtiofsd, runsc) or by
// a pod or container id.
func (h *Host) processLeaks() []procmem.Process {
	h.mu.Lock()
	marks := append([]string{h.Dir, StateDir}, h.ids...)
	h.mu.Unlock()
	var out []procmem.Process
	for _, p := range procmem.List() {
		if p.Pid == os.Getpid() || h.stack != nil && p.Pid == h.stack.Containerd.Pid() {
			continue
		}
		cmd := p.Cmdline()
		for _, m := range marks {
			if m != "" && strings.Contains(cmd, m) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// stateLeftovers lists sandboxes in StateDir.
func stateLeftovers() []string {
	ents, _ := os.ReadDir(filepath.Join(StateDir, "sandboxes"))
	var out []string
	for _, e := range ents {
		out = append(out, "sandbox state directory: "+filepath.Join(StateDir, "sandboxes", e.Name()))
	}
	return out
}

// hostTaps names podvm's taps in the host network namespace (they belong
// in pod namespaces).
func hostTaps() map[string]bool {
	out := map[string]bool{}
	for _, t := range hostbed.HostTaps() {
		out[t] = true
	}
	return out
}

// ShimLog reads the podvm shims' start lines from containerd's log.
func (h *Host) ShimLog() (*shimlog.Log, error) {
	f, err := os.Open(h.LogPath())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return shimlog.Read(f)
}

// VMAccelerator is the accelerator every pod VM so far ran with ("kvm" or
// "tcg"), "mixed" if they differed, "" if there was none.
func (h *Host) VMAccelerator() string {
	l, err := h.ShimLog()
	if err != nil {
		return ""
	}
	one := ""
	for _, v := range l.VMs {
		if one != "" && v.Accelerator != one {
			return "mixed"
		}
		one = v.Accelerator
	}
	return one
}

// RuntimeName says what a handler runs.
func RuntimeName(handler string) string {
	if handler == "runsc" {
		return "runsc (gVisor)"
	}
	return handler
}
