package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/factory/cache"
)

// The podvm-cache class: its pod VMs are the ones `podvm factory serve`
// (the component podvm-factory) booted ahead, as a node runs the daemon
// beside containerd (docs/factory.md section 8, docs/deploy.md).

// CacheClass is the runtime class (and handler) whose pod VMs come from
// the VM cache: podvm's config-cache.toml.
const CacheClass = "podvm-cache"

// factoryComponent is the daemon's name among the cluster's components:
// its log is logs/podvm-factory.log, its pid file run/podvm-factory.pid.
const factoryComponent = "podvm-factory"

// factoryFillTimeout bounds the wait for the daemon's full pool: it boots
// one VM after another, about a second each under TCG here.
const factoryFillTimeout = 3 * time.Minute

func (o Options) podvmCacheConfig() string {
	return filepath.Join(o.PodvmPrefix, "share", "podvm", "config-cache.toml")
}

// cacheConfig is the configuration the podvm-cache handler's shims and
// the daemon read.
func (o Options) cacheConfig() (*config.Config, error) {
	eff, err := config.Resolve(o.podvmCacheConfig(), o.shim())
	if err != nil {
		return nil, fmt.Errorf("podvm config of class %s: %w", CacheClass, err)
	}
	return eff.Config, nil
}

// DefaultCachePool is the local cluster's VM cache pool: the podvm-cache
// class's spec run (make conformance) takes 11 VMs of the cache's size
// (13 pod VMs, 2 of them bigger: they boot by design), several within
// seconds, and the daemon refills only after 10 s without a claim
// (runtime/factory/cache RefillQuiet). A pool of all of them, full when the
// class starts, serves each spec whatever the order; one more is margin.
const DefaultCachePool = 12

// daemonCacheConfig is the configuration the VM cache's daemon runs with:
// config-cache.toml, or with CachePool 0 or more, a copy of it in the cluster's
// directory whose only change is factory.cache_size. The shims keep
// config-cache.toml: the pool's key is the guest image and VMM settings,
// which the copy does not change.
func (p *Provider) daemonCacheConfig() (string, error) {
	o := p.opts
	if o.CachePool < 0 {
		return o.podvmCacheConfig(), nil
	}
	b, err := os.ReadFile(o.podvmCacheConfig())
	if err != nil {
		return "", fmt.Errorf("podvm config of class %s: %w", CacheClass, err)
	}
	text, err := withCacheSize(string(b), o.CachePool)
	if err != nil {
		return "", fmt.Errorf("%s: %w", o.podvmCacheConfig(), err)
	}
	return p.l.factoryConfig(), os.WriteFile(p.l.factoryConfig(), []byte(text), 0o644)
}

var cacheSizeLine = regexp.MustCompile(`(?m)^cache_size = \d+$`)

// withCacheSize is a configuration's text with its factory.cache_size
// line set to size (comments and everything else kept), checked by the
// parser.
func withCacheSize(text string, size int) (string, error) {
	if n := len(cacheSizeLine.FindAllString(text, -1)); n != 1 {
		return "", fmt.Errorf("%d lines \"cache_size = N\" to change, want 1", n)
	}
	out := cacheSizeLine.ReplaceAllString(text, "cache_size = "+strconv.Itoa(size))
	c, err := config.Parse([]byte(out), "the VM cache daemon's config")
	if err != nil {
		return "", err
	}
	if c.Factory.CacheSize != size {
		return "", fmt.Errorf("factory.cache_size is %d after the change, want %d", c.Factory.CacheSize, size)
	}
	return out, nil
}

// poolSize is the size of the pool the daemon keeps.
func (p *Provider) poolSize() (int, error) {
	if p.opts.CachePool >= 0 {
		return p.opts.CachePool, nil
	}
	cfg, err := p.opts.cacheConfig()
	if err != nil {
		return 0, err
	}
	return cfg.Factory.CacheSize, nil
}

// FactoryReady waits until the pool of class podvm-cache is full (the
// harness calls it before the class's spec run); nil at once for another
// class.
func (p *Provider) FactoryReady(ctx context.Context, class string) error {
	if class != CacheClass || p.opts.WithoutPodvmHandler {
		return nil
	}
	cfg, err := p.opts.cacheConfig()
	if err != nil {
		return err
	}
	size, err := p.poolSize()
	if err != nil {
		return err
	}
	return p.waitPoolFull(ctx, cache.Pool{Dir: cache.PoolDir(cfg.Runtime.StateDir)}, size)
}

// waitPoolFull waits until pool holds size ready VMs, or fails with the
// daemon's log when it dies or does not get there in time.
func (p *Provider) waitPoolFull(ctx context.Context, pool cache.Pool, size int) error {
	return waitFor(ctx, p.l, factoryComponent, factoryFillTimeout, func() error {
		ready, booting, err := pool.Ready()
		if err == nil && len(ready) < size {
			err = fmt.Errorf("%d of %d VMs ready, %d booting", len(ready), size, booting)
		}
		return err
	})
}

// cacheClasses are the cluster's classes whose pod VMs come from the cache.
func cacheClasses(o Options) []string {
	if o.WithoutPodvmHandler {
		return nil
	}
	return []string{CacheClass}
}

// templateClasses are the cluster's classes whose pod VMs are clones.
func templateClasses(o Options) []string {
	if o.WithoutPodvmHandler {
		return nil
	}
	return []string{TemplateClass}
}

// running are the components Up starts: the VM cache's daemon only with
// the podvm handlers.
func (p *Provider) running() []string {
	if !p.opts.WithoutPodvmHandler {
		return components
	}
	var out []string
	for _, c := range components {
		if c != factoryComponent {
			out = append(out, c)
		}
	}
	return out
}

// startFactory starts the installed `podvm factory serve` for the
// podvm-cache class as a component (its own log, stopped by Down, its
// death shown by Status and by the check after the kubelet's start) and
// waits until its pool is full, so that the class's first pods find VMs.
func (p *Provider) startFactory(ctx context.Context, s *state, step stepf) error {
	o, l := p.opts, p.l
	if o.WithoutPodvmHandler {
		return nil
	}
	cfg, err := o.cacheConfig()
	if err != nil {
		return err
	}
	_, err = os.Stat(filepath.Join("/run/netns", cache.HoldNetNS))
	s.CacheNetNSBefore = err == nil
	if err := p.saveState(*s); err != nil {
		return err
	}
	daemonConfig, err := p.daemonCacheConfig()
	if err != nil {
		return err
	}
	size, err := p.poolSize()
	if err != nil {
		return err
	}
	pool := cache.Pool{Dir: cache.PoolDir(cfg.Runtime.StateDir)}
	step("VM cache for class %s: podvm factory serve, %d VMs in %s", CacheClass, size, pool.Dir)
	if err := startFactoryDaemon(ctx, l, []string{filepath.Join(o.PodvmPrefix, "bin", "podvm"), "factory", "serve", "--config", daemonConfig}); err != nil {
		return err
	}
	return p.waitPoolFull(ctx, pool, size)
}

// cleanFactory ends what the stopped daemon left: VMs of its pool (after a
// SIGKILL they outlive it), the pool and its lock (podvm factory clean),
// the holding network namespace when Up made it, and the class's state
// directory once it is empty. Claimed VMs went with their pods before.
func (p *Provider) cleanFactory(s state, step stepf) error {
	cfg, err := p.opts.cacheConfig()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	if err := cache.Clean(cfg.Runtime.StateDir, nil); err != nil {
		errs = append(errs, fmt.Errorf("end the VM cache of class %s: %w", CacheClass, err))
	}
	if !s.CacheNetNSBefore {
		if _, err := os.Stat(filepath.Join("/run/netns", cache.HoldNetNS)); err == nil {
			step("removing the VM cache's network namespace %s", cache.HoldNetNS)
			if out, err := exec.Command("ip", "netns", "delete", cache.HoldNetNS).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", cache.HoldNetNS, err, strings.TrimSpace(string(out))))
			}
		}
	}
	// Empty directories only: a sandbox a live shim holds stays.
	os.Remove(filepath.Join(cfg.Runtime.StateDir, "sandboxes"))
	os.Remove(cfg.Runtime.StateDir)
	return errors.Join(errs...)
}

// factoryStartWatch is how long a started daemon must stay up to count as
// started: one that cannot start (a bad configuration, another daemon on
// its pool) exits at once.
const factoryStartWatch = 3 * time.Second

// startFactoryDaemon starts the VM cache's daemon (argv) as the component
// podvm-factory, its log appended to, and fails with its log's tail if it
// exits within factoryStartWatch.
func startFactoryDaemon(ctx context.Context, l layout, argv []string) error {
	if _, err := startDaemon(l, daemon{name: factoryComponent, path: argv[0], args: argv[1:], appendLog: true}); err != nil {
		return err
	}
	until := time.Now().Add(factoryStartWatch)
	return waitFor(ctx, l, factoryComponent, time.Minute, func() error {
		if time.Now().Before(until) {
			return errors.New("started less than 3 s ago")
		}
		return nil
	})
}

// FactoryService starts, restarts or stops the VM cache's daemon of the
// local cluster in dir: the node installer's --factory-command there
// (`podvm cluster factory-service`), as `podvm cluster restart-containerd`
// is its --restart-command. The daemon runs as the component
// podvm-factory, in containerd's namespaces and cgroups (so that it does
// not live, and die, with the installer's pod), with its own log; Status
// reports its death and Down stops it. Start leaves a running daemon as it
// is; argv is the daemon's command line (start and restart).
func FactoryService(ctx context.Context, dir, action string, argv []string, out io.Writer) error {
	l := layout{dir: dir}
	if action != "stop" && len(argv) == 0 {
		return fmt.Errorf("%s: no command line for the daemon", action)
	}
	pid, reexeced, err := intoContainerd(ctx, l, out)
	if err != nil || reexeced {
		return err
	}
	running, _ := daemonPID(l, factoryComponent)
	switch action {
	case "stop", "restart":
		fmt.Fprintf(out, "stopping %s (pid %d)\n", factoryComponent, running)
		if err := stopDaemon(l, factoryComponent, 90*time.Second); err != nil || action == "stop" {
			return err
		}
	case "start":
		if running != 0 {
			fmt.Fprintf(out, "%s already runs (pid %d)\n", factoryComponent, running)
			return nil
		}
	default:
		return fmt.Errorf("unknown action %q: start, restart or stop", action)
	}
	if err := joinCgroups(pid); err != nil {
		return err
	}
	if err := startFactoryDaemon(ctx, l, argv); err != nil {
		return err
	}
	now, _ := daemonPID(l, factoryComponent)
	fmt.Fprintf(out, "started %s (pid %d), log %s\n", factoryComponent, now, l.log(factoryComponent))
	return nil
}
