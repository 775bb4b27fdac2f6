package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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

	web := h.containerConfig("web", nil, "sh", "-c",
		"mkdir -p /www && cat /proc/sys/kernel/random/boot_id > /www/index.html && exec httpd -f -p 8080 -h /www")
	bootIDs := map[string]string{}
	for _, pod := range []string{podA, podB, podN} {
		podCfg := filepath.Join(h.dir, podName(t, h, pod)+"-pod.json")
		ctr := h.startContainer(pod, podCfg, web)
		id := h.crictl("exec", ctr, "cat", "/proc/sys/kernel/random/boot_id")
		if other, dup := bootIDs[id]; dup {
			t.Errorf("pods %s and %s share boot_id %s", other, pod, id)
		}
		bootIDs[id] = pod
		if got := httpGet(t, "http://"+podIP(t, h, pod)+":8080/"); strings.TrimSpace(got) != id {
			t.Errorf("pod %s over its network: %q, want its boot_id %s", pod, got, id)
		}
		if pod == podB {
			checkPortForward(t, h, tools, pod, id)
			checkOOMStatsKill(t, h, pod, podCfg, ctr)
		}
	}
	for _, pod := range []string{podA, podB, podN} {
		h.crictl("stopp", pod)
		h.crictl("rmp", pod)
		assertNoLeaks(t, pod)
	}
	if left := h.crictl("pods", "--quiet") + h.crictl("ps", "--all", "--quiet"); left != "" {
		t.Errorf("CRI still lists: %s", left)
	}

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
