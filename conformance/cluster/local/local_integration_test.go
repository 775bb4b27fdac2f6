package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/conformance/fakevm"
	"github.com/podvm/podvm/internal/hostbed"
)

// testOptions is a second cluster beside any `podvm cluster up` one: its
// own dir, ports, bridge, node name and cgroup root.
func testOptions(t *testing.T) Options {
	o := DefaultOptions()
	dir, err := os.MkdirTemp("", "podvm-lc-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o.Dir = dir
	o.NodeName = "podvm-itest-node"
	o.Bridge = "podvm-k8st0"
	o.CgroupRoot = "/podvm-itest"
	o.APIServerPort, o.EtcdPort, o.KubeletPort = 16443, 12379, 11250
	o.PodvmPrefix = os.Getenv("PODVM_PREFIX")
	o.CachePool = -1 // config-cache.toml's: one cache pod here
	return o
}

// requireLocal skips (fails under make test) unless this host can run the
// local cluster: root and every binary preflight checks.
func requireLocal(t *testing.T, o *Options) {
	t.Helper()
	bin := t.TempDir()
	missing := ""
	if o.PodvmPrefix == "" {
		missing = "PODVM_PREFIX pointing at a podvm install (make install-dev)"
	} else if tb, err := hostbed.BuildTestbin(bin); err != nil {
		missing = "testbin: " + err.Error()
	} else {
		o.Testbin = tb
		o.Podvm = filepath.Join(bin, "podvm")
		o.FakeVMRunc = filepath.Join(bin, fakevm.WrapperName)
		if out, err := exec.Command("go", "build", "-o", o.Podvm, "github.com/podvm/podvm/cmd/podvm").CombinedOutput(); err != nil {
			missing = fmt.Sprintf("podvm binary: %v: %s", err, out)
		} else if out, err := exec.Command("go", "build", "-o", o.FakeVMRunc, "github.com/podvm/podvm/conformance/fakevm/cmd/"+fakevm.WrapperName).CombinedOutput(); err != nil {
			missing = fmt.Sprintf("fake VM wrapper: %v: %s", err, out)
		} else if err := New(*o).preflight(); err != nil {
			missing = err.Error()
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration prerequisite missing: %s", missing)
	}
	t.Skipf("local cluster test needs: %s", missing)
}

// TestLocalClusterIntegration brings the local cluster up, runs a runc pod,
// a podvm pod and a fake-VM pod on it, takes it down and checks the host
// is as before.
func TestLocalClusterIntegration(t *testing.T) {
	o := testOptions(t)
	requireLocal(t, &o)
	release, err := hostbed.LockHost("test-kubernetes-cluster") // not beside TestDeployIntegration
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	p := New(o)
	chainsBefore := clusterChains.Snapshot()
	cacheCfg, err := o.cacheConfig()
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat("/run/netns/podvm-cache")
	netnsBefore := err == nil

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out bytes.Buffer
	c, err := p.Up(ctx, &out)
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			p.Down(context.Background(), &out)
		}
	})
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	st, err := p.Status(ctx)
	if err != nil || !st.Healthy() {
		t.Fatalf("status after up: %v\n%s", err, st)
	}

	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, o.kube("kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return strings.TrimSpace(string(b))
	}
	const pods = `
apiVersion: v1
kind: Pod
metadata: {name: on-runc}
spec:
  runtimeClassName: runc
  containers: [{name: c, image: docker.io/library/busybox:1.37, command: [sh, -c, "uname -r; sleep 600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-podvm}
spec:
  runtimeClassName: podvm
  containers: [{name: c, image: docker.io/library/busybox:1.37, command: [sh, -c, "uname -r; sleep 600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-cache}
spec:
  runtimeClassName: podvm-cache
  containers: [{name: c, image: docker.io/library/busybox:1.37, command: [sh, -c, "uname -r; sleep 600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-fakevm}
spec:
  runtimeClassName: runc-fakevm
  containers: [{name: c, image: docker.io/library/busybox:1.37, command: [sh, -c, "uname -r; sleep 600"]}]
`
	kubectl(pods, "apply", "-f", "-")
	kubectl("", "wait", "--for=condition=Ready", "--timeout=3m", "pod/on-runc", "pod/on-podvm", "pod/on-cache", "pod/on-fakevm")
	// Ready is the container started, not its first line logged: a pod
	// VM's output reaches the log a moment later (seconds under TCG on a
	// loaded host).
	logs := func(pod string) string {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			if got := kubectl("", "logs", pod); got != "" || time.Now().After(deadline) {
				return got
			}
		}
	}
	hostKernel := strings.TrimSpace(run(t, "uname", "-r"))
	if got := logs("on-runc"); got != hostKernel {
		t.Errorf("runc pod kernel %q, want the host's %q", got, hostKernel)
	}
	if got := logs("on-podvm"); got == hostKernel || !strings.Contains(got, "podvm") {
		t.Errorf("podvm pod kernel %q, want the guest kernel (host is %q)", got, hostKernel)
	}
	if got := logs("on-cache"); got == hostKernel || !strings.Contains(got, "podvm") {
		t.Errorf("podvm-cache pod kernel %q, want the guest kernel (host is %q)", got, hostKernel)
	}
	if shims, _ := os.ReadFile(c.ShimLog); strings.Count(string(shims), `msg="pod VM taken from the VM cache"`) != 1 {
		t.Errorf("the podvm-cache pod's VM was not taken from the VM cache (%s)", c.ShimLog)
	}

	if got := kubectl("", "exec", "on-podvm", "--", "cat", "/proc/self/cgroup"); got == "" {
		t.Errorf("exec into the podvm pod printed nothing")
	}
	// The fake VM shares the host's kernel and shows a VM's /proc/meminfo
	// (256 MiB without a limit): its wrapper ran, and found the real runc.
	if got := logs("on-fakevm"); got != hostKernel {
		t.Errorf("fake-VM pod kernel %q, want the host's %q", got, hostKernel)
	}
	if got := kubectl("", "exec", "on-fakevm", "--", "head", "-n1", "/proc/meminfo"); strings.Join(strings.Fields(got), " ") != "MemTotal: 262144 kB" {
		t.Errorf("fake-VM pod /proc/meminfo starts %q, want the fake's MemTotal: 262144 kB", got)
	}

	// Other test packages run VMs at the same time, so the leak check looks
	// only at what belongs to this cluster: its sandboxes, and shims that
	// name this cluster's containerd.
	out2, err := exec.Command(o.Crictl, "--runtime-endpoint", p.l.criEndpoint(), "pods", "-q").Output()
	if err != nil {
		t.Fatalf("crictl pods: %v", err)
	}
	sandboxes := strings.Fields(string(out2))
	if len(sandboxes) < 3 {
		t.Fatalf("crictl pods listed %d sandboxes, want the 3 pods of this test", len(sandboxes))
	}

	// Down with the pods still running: it must remove them.
	downDone = true
	if err := p.Down(context.Background(), &out); err != nil {
		t.Fatalf("down: %v\n%s", err, out.String())
	}
	var left []string
	for _, id := range sandboxes {
		left = append(left, hostbed.Leaks(id)...)
	}
	left = append(left, hostbed.Leaks(o.Dir)...)
	if m := hostbed.MountsUnder(o.Dir); len(m) > 0 {
		left = append(left, "mounts: "+strings.Join(m, ", "))
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", o.CgroupRoot)); err == nil {
		left = append(left, "cgroup root "+o.CgroupRoot)
	}
	// The VM cache: its daemon, VMs, pool, state dir, netns and cgroup.
	left = append(left, hostbed.LeaksIn(cacheCfg.Runtime.StateDir, cacheCfg.Runtime.StateDir)...)
	if _, err := os.Stat(cacheCfg.Runtime.StateDir); err == nil {
		left = append(left, "the VM cache's state dir "+cacheCfg.Runtime.StateDir)
	}
	if _, err := os.Stat("/run/netns/podvm-cache"); err == nil && !netnsBefore {
		left = append(left, "network namespace podvm-cache")
	}
	for _, d := range hostbed.CgroupDirs("/podvm-cache") {
		left = append(left, "cgroup "+d)
	}
	// Only this cluster's line: other tests' clusters (deploy/) add and
	// remove their own at the same time.
	if b, _ := os.ReadFile(hostsFile); bytes.Contains(b, []byte(o.NodeName)) {
		left = append(left, "/etc/hosts still names "+o.NodeName)
	}
	if _, err := exec.Command("ip", "link", "show", o.Bridge).CombinedOutput(); err == nil {
		left = append(left, "bridge "+o.Bridge)
	}
	for ch := range clusterChains.Snapshot() {
		if !chainsBefore[ch] {
			left = append(left, "iptables chain "+ch)
		}
	}
	for _, comp := range components {
		if pid, _ := daemonPID(p.l, comp); pid != 0 {
			left = append(left, fmt.Sprintf("%s pid %d", comp, pid))
		}
	}
	if len(left) > 0 {
		t.Errorf("left on the host after down:\n  %s\n%s", strings.Join(left, "\n  "), out.String())
	}
}

func run(t *testing.T, name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}
