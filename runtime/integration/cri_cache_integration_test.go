package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/factory/cache"
	"github.com/podvm/podvm/runtime/hypervisor/drivers"
)

// cacheHandler is the runtime handler whose pods take VMs booted ahead
// (factory.mode = "cache", docs/factory.md section 8).
const cacheHandler = "podvm-cache"

// cacheTestNetNS is the test daemon's holding network namespace.
const cacheTestNetNS = "podvm-cache-test"

// TestCRICacheSmokeIntegration runs the cache's daemon in the test (what
// `podvm factory serve` runs on a node) and pods of the cache handler
// through CRI beside a pod of the default handler: each cache pod's VM is
// one the daemon booted (the shim's log says so; a pod that booted its
// own fails the test), jailed, with the pod network (reached from the
// host at the pod's IP), exec, an OOM kill, stats, a killed container,
// port-forward, a boot id of its own, and nothing left behind: no pod,
// and once the daemon ends, no process of a cached VM and an empty pool.
func TestCRICacheSmokeIntegration(t *testing.T) {
	h, tools := cacheBed(t, 2)
	c := h.c

	podA, tookA := h.runPodOn(cacheHandler, "cache-a")
	podB, tookB := h.runPodOn(cacheHandler, "cache-b")
	podN, tookN := h.runPodOn("podvm", "none-c")
	t.Logf("RunPodSandbox: cache %s, %s; none %s", tookA.Round(time.Millisecond), tookB.Round(time.Millisecond), tookN.Round(time.Millisecond))
	log := readFile(t, c.LogPath)
	for _, pod := range []string{podA, podB, podN} {
		for _, l := range strings.Split(linesWith(log, pod), "\n") {
			if strings.Contains(l, "VM cache") || strings.Contains(l, `msg="pod VM ready"`) {
				t.Log(l)
			}
		}
	}
	for _, pod := range []string{podA, podB} {
		lines := linesWith(log, pod)
		if !strings.Contains(lines, "pod VM taken from the VM cache") || strings.Contains(lines, "not taken from the VM cache") {
			t.Errorf("pod %s: its VM was not taken from the cache; its lines:\n%s", pod, lines)
		}
		// The shim holds the jailed QEMU's uid lock too, not only the daemon.
		if !strings.Contains(lines, "jail_uid_lock=/run/podvm/jail-uids/") {
			t.Errorf("pod %s: the shim took no jail uid lock of its cached VM; its lines:\n%s", pod, lines)
		}
		requireJailed(t, filepath.Join(pod, cache.ClaimedName)) // the claimed VM's qemu.pid is in vm/
	}
	if strings.Contains(linesWith(log, podN), "VM cache") {
		t.Errorf("the pod of the factory-less handler went to the VM cache")
	}

	smokeFactoryPods(t, h, tools, []string{podA, podB, podN}, podB, nil)
}

// cacheBed is a CRI bed with the cache handler beside the default one and
// the cache's daemon keeping size VMs, all of them ready, busybox pulled.
func cacheBed(t *testing.T, size int) (*criHarness, *criTools) {
	t.Helper()
	env := requireEnv(t)
	tools := requireCRI(t)
	cfgPath := cacheConfig(t, env.ConfigPath, size)
	startCacheDaemon(t, env, cfgPath, size)
	c := startCRI(t, env, tools, hostbed.PodvmHandler(cacheHandler, env.ShimBinary, cfgPath))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	h := &criHarness{t: t, c: c, dir: t.TempDir(), ctx: ctx}
	h.crictl("pull", criBusybox)
	return h, tools
}

// startCacheDaemon runs the cache's daemon for cfgPath until the test
// ends, waits for n ready VMs, and at the end checks that the daemon
// left no VM process and an empty pool. It runs in the test's process, so
// the install's helpers are named as the installed podvm finds them
// beside itself.
func startCacheDaemon(t *testing.T, env *testEnv, cfgPath string, n int) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hypervisor.QEMU.VirtiofsdPath == "" {
		cfg.Hypervisor.QEMU.VirtiofsdPath = filepath.Join(env.Prefix, "libexec", "podvm", "virtiofsd")
	}
	driver, err := drivers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := cache.Pool{Dir: cache.PoolDir(cfg.Runtime.StateDir)}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- (&cache.Daemon{Config: cfg, Driver: driver, NetNS: cacheTestNetNS}).Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("the cache daemon: %v", err)
		}
		exec.Command("ip", "netns", "delete", cacheTestNetNS).Run()
		if procs := processesMentioning(pool.Dir); len(procs) > 0 {
			t.Errorf("processes of cached VMs left: %q", procs)
		}
		if ready, booting, _ := pool.Ready(); len(ready)+booting > 0 {
			t.Errorf("the pool %s still has %d ready and %d booting VMs", pool.Dir, len(ready), booting)
		}
	})
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if ready, _, _ := pool.Ready(); len(ready) >= n {
			return
		}
		select {
		case err := <-ran:
			t.Fatalf("the cache daemon ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache daemon had no %d VMs ready within 2 minutes", n)
		}
	}
}

// cacheConfig is the install's config with factory.mode = "cache" and
// cache_size = size.
func cacheConfig(t *testing.T, base string, size int) string {
	t.Helper()
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^mode = "none"$`).ReplaceAllString(string(b), `mode = "cache"`)
	text = regexp.MustCompile(`(?m)^cache_size = .*$`).ReplaceAllString(text, fmt.Sprintf("cache_size = %d", size))
	if !strings.Contains(text, `mode = "cache"`) {
		t.Fatalf("the install's config %s has no [factory] table to set", base)
	}
	p := filepath.Join(t.TempDir(), "podvm-cache.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCRICacheTenAtOnceIntegration is a measurement, not a check (set
// PODVM_TEST_CACHE_TEN=1): ten pods at once to their containers' output,
// first on the cache handler with ten VMs ready, then on the default
// handler, in the same bed (issue 16's "ten CRI pods at once" target).
func TestCRICacheTenAtOnceIntegration(t *testing.T) {
	if os.Getenv("PODVM_TEST_CACHE_TEN") != "1" {
		t.Skip("a measurement: set PODVM_TEST_CACHE_TEN=1")
	}
	h, _ := cacheBed(t, 10)
	c := h.c
	for _, handler := range []string{cacheHandler, "podvm"} {
		took := h.tenAtOnce(handler)
		t.Logf("ten pods at once on %s: all outputs in %s", handler, took.Round(time.Millisecond))
		if handler == cacheHandler {
			log := readFile(t, c.LogPath)
			t.Logf("taken from the cache: %d of 10; booted after no cached VM fit: %d",
				strings.Count(log, "pod VM taken from the VM cache"), strings.Count(log, "not taken from the VM cache"))
		}
	}
}

// tenAtOnce starts ten pods of handler at once (`crictl run`), each with a
// container that prints, and returns the time until every output is in
// its log; then it removes them.
func (h *criHarness) tenAtOnce(handler string) time.Duration {
	h.t.Helper()
	type started struct {
		ctr string
		err error
	}
	out := make(chan started, 10)
	begin := time.Now()
	for i := range 10 {
		name := fmt.Sprintf("ten-%s-%d", handler, i)
		pod := h.podConfig(name, nil)
		ctr := h.containerConfig("main", nil, "echo", "ten-at-once")
		go func() {
			r := h.c.Crictl(h.ctx, "run", "--runtime", handler, ctr, pod)
			if r.ExitCode != 0 {
				out <- started{err: fmt.Errorf("crictl run %s: exit %d: %s", name, r.ExitCode, r.Stderr)}
				return
			}
			id := strings.TrimSpace(r.Stdout)
			for h.ctx.Err() == nil {
				if l := h.c.Crictl(h.ctx, "logs", id); strings.Contains(l.Stdout, "ten-at-once") {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			out <- started{ctr: id}
		}()
	}
	for range 10 {
		if s := <-out; s.err != nil {
			h.t.Error(s.err)
		}
	}
	took := time.Since(begin)
	for _, pod := range strings.Fields(h.crictl("pods", "--quiet")) {
		h.crictl("stopp", pod)
		h.crictl("rmp", pod)
		assertNoLeaks(h.t, pod)
	}
	return took
}

// TestCRICacheOutlivesDaemonIntegration attacks the daemon: with a pod
// running on a cached VM, the daemon (`podvm factory serve` of the
// install, its own process) is killed with SIGKILL. The pod's VM must
// live on and answer an exec; the VM the daemon held unclaimed lives on
// too, but no pod takes it (a second cache pod boots its own VM, saying
// why); a new daemon's start ends it, and at that daemon's end nothing of
// the cache is left.
func TestCRICacheOutlivesDaemonIntegration(t *testing.T) {
	env := requireEnv(t)
	tools := requireCRI(t)
	cfgPath := cacheConfig(t, env.ConfigPath, 2)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := cache.Pool{Dir: cache.PoolDir(cfg.Runtime.StateDir)}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", cache.HoldNetNS).Run() })
	first := startDaemonProcess(t, env, cfgPath, pool, 2)
	c := startCRI(t, env, tools, hostbed.PodvmHandler(cacheHandler, env.ShimBinary, cfgPath))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	h := &criHarness{t: t, c: c, dir: t.TempDir(), ctx: ctx}
	h.crictl("pull", criBusybox)

	pod, _ := h.runPodOn(cacheHandler, "outlive-a")
	if lines := linesWith(readFile(t, c.LogPath), pod); !strings.Contains(lines, "pod VM taken from the VM cache") {
		t.Fatalf("pod %s: its VM was not taken from the cache; its lines:\n%s", pod, lines)
	}
	podCfg := filepath.Join(h.dir, "outlive-a-pod.json")
	ctr := h.startContainer(pod, podCfg, h.containerConfig("main", nil, "sleep", "3600"))
	bootID := h.crictl("exec", ctr, "cat", "/proc/sys/kernel/random/boot_id")
	claimed, err := cache.ReadEntry(filepath.Join(hostbed.DefaultStateDir, "sandboxes", pod, cache.ClaimedName))
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, pool, 2, nil) // the daemon's refill of the VM the pod took
	ready, _, _ := pool.Ready()
	var unclaimed []int
	for _, e := range ready {
		unclaimed = append(unclaimed, e.Pids...)
	}

	first.kill(t)
	time.Sleep(2 * time.Second) // a parent-death signal acts at once; give the pod's exec no head start
	for _, pid := range claimed.Pids {
		if !processRuns(pid) {
			t.Errorf("process %d of pod %s's VM died with the daemon", pid, pod)
		}
	}
	if got := h.crictl("exec", ctr, "cat", "/proc/sys/kernel/random/boot_id"); got != bootID {
		t.Errorf("pod %s after the daemon's death: boot_id %q, want %q", pod, got, bootID)
	}
	for _, pid := range unclaimed {
		if !processRuns(pid) {
			t.Errorf("unclaimed VM process %d died with the daemon (expected to outlive it until the next daemon)", pid)
		}
	}
	// While no daemon runs, a cache pod boots its own VM: the orphans'
	// jail uid locks died with their daemon.
	podB, _ := h.runPodOn(cacheHandler, "outlive-b")
	if lines := linesWith(readFile(t, c.LogPath), podB); !strings.Contains(lines, "the daemon that booted them is gone") {
		t.Errorf("pod %s took a VM of a dead daemon, or booted without saying why; its lines:\n%s", podB, lines)
	}

	second := startDaemonProcess(t, env, cfgPath, pool, 2)
	for _, pid := range unclaimed {
		if processRuns(pid) {
			t.Errorf("unclaimed VM process %d of the killed daemon runs on after a new daemon started", pid)
		}
	}
	if got := h.crictl("exec", ctr, "cat", "/proc/sys/kernel/random/boot_id"); got != bootID {
		t.Errorf("pod %s after a new daemon started: boot_id %q, want %q", pod, got, bootID)
	}
	for _, p := range []string{pod, podB} {
		h.crictl("stopp", p)
		h.crictl("rmp", p)
		assertNoLeaks(t, p)
	}
	for _, pid := range claimed.Pids {
		if processRuns(pid) {
			t.Errorf("process %d of pod %s's VM runs on after the pod was removed", pid, pod)
		}
	}
	second.stop(t)
	if procs := processesMentioning(pool.Dir); len(procs) > 0 {
		t.Errorf("processes of cached VMs left: %q", procs)
	}
	if ready, booting, _ := pool.Ready(); len(ready)+booting > 0 {
		t.Errorf("the pool %s still has %d ready and %d booting VMs", pool.Dir, len(ready), booting)
	}
}

// daemonProcess is `podvm factory serve` of the install under test.
type daemonProcess struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// startDaemonProcess starts the install's `podvm factory serve` with
// cfgPath and waits until the pool has n ready VMs of its own.
func startDaemonProcess(t *testing.T, env *testEnv, cfgPath string, pool cache.Pool, n int) *daemonProcess {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "factory-serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d := &daemonProcess{log: logf.Name(), exited: make(chan struct{})}
	d.cmd = exec.Command(filepath.Join(env.Prefix, "bin", "podvm"), "factory", "serve", "--config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("log of the cache daemon (pid %d):\n%s", d.cmd.Process.Pid, readFile(t, d.log))
		}
	})
	waitReady(t, pool, n, d)
	return d
}

// waitReady waits up to two minutes for n ready VMs of a living daemon
// (d's, if not nil) in pool.
func waitReady(t *testing.T, pool cache.Pool, n int, d *daemonProcess) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		ready, _, _ := pool.Ready()
		mine := 0
		for _, e := range ready {
			if d == nil || e.Keeper == d.cmd.Process.Pid {
				mine++
			}
		}
		if mine >= n {
			return
		}
		if d != nil {
			select {
			case <-d.exited:
				t.Fatalf("the cache daemon ended: %s; its log:\n%s", d.cmd.ProcessState, readFile(t, d.log))
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache daemon had no %d VMs ready within 2 minutes", n)
		}
	}
}

// kill ends the daemon with SIGKILL: no chance to stop its VMs.
func (d *daemonProcess) kill(t *testing.T) {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// stop ends the daemon as its service would (SIGTERM), at most once.
func (d *daemonProcess) stop(t *testing.T) {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		t.Errorf("the cache daemon did not end within a minute of SIGTERM")
		<-d.exited
	}
}

// processRuns says whether pid is a process that has not exited (a
// zombie has: PID 1 on this machine reaps no orphan).
func processRuns(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}
