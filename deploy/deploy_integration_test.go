package deploy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podvm/podvm/conformance/cluster/local"
	"github.com/podvm/podvm/deploy"
	"github.com/podvm/podvm/deploy/node"
	"github.com/podvm/podvm/internal/hostbed"
)

// deployEnv is what the test builds before the cluster comes up.
type deployEnv struct {
	opts     local.Options
	binDir   string // static podvm, containerd-shim-podvm-v2, podvm-agent
	guestDir string
	spec     string // the isolation specs' binary
	prefix   string // where the installer puts podvm on the node
}

// requireDeploy skips (fails under PODVM_REQUIRE_INTEGRATION=1) unless
// this host can run the test: root, a podvm install (PODVM_PREFIX, for the
// guest image and agent), nsenter, and everything the local cluster needs.
func requireDeploy(t *testing.T) *deployEnv {
	t.Helper()
	e := &deployEnv{}
	missing := func() string {
		if os.Geteuid() != 0 {
			return "root privileges (the local cluster's kubelet and containerd need them)"
		}
		pp := os.Getenv("PODVM_PREFIX")
		if pp == "" {
			return "PODVM_PREFIX pointing at a podvm install (make install-dev, then PODVM_PREFIX=_output)"
		}
		e.guestDir = filepath.Join(pp, "share", "podvm")
		for _, f := range []string{filepath.Join(e.guestDir, "vmlinux"), filepath.Join(e.guestDir, "initramfs.cpio"), filepath.Join(pp, "bin", "podvm-agent")} {
			if _, err := os.Stat(f); err != nil {
				return f + " (make install-dev)"
			}
		}
		if _, err := exec.LookPath("nsenter"); err != nil {
			return "nsenter (apt-get install util-linux): the local cluster's containerd is restarted through it"
		}
		e.binDir = t.TempDir()
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", e.binDir+"/",
			"github.com/podvm/podvm/cmd/podvm", "github.com/podvm/podvm/cmd/containerd-shim-podvm-v2")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Sprintf("static podvm binaries: %v: %s", err, out)
		}
		agent, err := os.ReadFile(filepath.Join(pp, "bin", "podvm-agent"))
		if err != nil {
			return err.Error()
		}
		if err := os.WriteFile(filepath.Join(e.binDir, "podvm-agent"), agent, 0o755); err != nil {
			return err.Error()
		}
		e.spec = filepath.Join(t.TempDir(), "podvm-spec.test")
		spec := exec.Command("go", "test", "-c", "-o", e.spec, ".")
		spec.Dir = "../spec"
		if out, err := spec.CombinedOutput(); err != nil {
			return fmt.Sprintf("the spec binary (cd spec && go test -c): %v: %s", err, out)
		}
		tb, err := hostbed.BuildTestbin(t.TempDir())
		if err != nil {
			return "testbin: " + err.Error()
		}
		// A cluster beside `podvm cluster up`'s and TestLocalClusterIntegration's:
		// its own dir, node, bridge, cgroup root and ports.
		o := local.DefaultOptions()
		dir, err := os.MkdirTemp("", "podvm-dp-") // short: unix socket paths
		if err != nil {
			return err.Error()
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		o.Dir, o.NodeName, o.Bridge, o.CgroupRoot = dir, "podvm-deploy-node", "podvm-k8sd0", "/podvm-deploy"
		o.APIServerPort, o.EtcdPort, o.KubeletPort = 26443, 22379, 21250
		o.WithoutPodvmHandler, o.PodvmPrefix = true, ""
		o.Podvm, o.Testbin = filepath.Join(e.binDir, "podvm"), tb
		e.opts = o
		opt, err := os.MkdirTemp("", "podvm-dp-node-")
		if err != nil {
			return err.Error()
		}
		t.Cleanup(func() { os.RemoveAll(opt) })
		e.prefix = filepath.Join(opt, "opt", "podvm")
		return ""
	}()
	if missing == "" {
		return e
	}
	if os.Getenv("PODVM_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration prerequisite missing: %s", missing)
	}
	t.Skipf("deploy test needs: %s", missing)
	return nil
}

// TestDeployIntegration deploys podvm onto a local cluster whose
// containerd does not have it, the way an operator would: build and push
// the installer image, `podvm deploy install`, the installer's token can
// change nothing but its own node's podvm label, a podvm pod passes the
// lift-and-shift spec, `podvm deploy uninstall`, and the node is as it was.
func TestDeployIntegration(t *testing.T) {
	e := requireDeploy(t)
	release, err := hostbed.LockHost("test-kubernetes-cluster") // not beside TestLocalClusterIntegration
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	o := e.opts
	p := local.New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	start := time.Now()
	phase := func(format string, a ...any) {
		t.Logf("[%5.1fs] %s", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	var upOut bytes.Buffer
	c, err := p.Up(ctx, &upOut)
	t.Cleanup(func() {
		var out bytes.Buffer
		if err := p.Down(context.Background(), &out); err != nil {
			t.Errorf("cluster down: %v\n%s", err, out.String())
		}
	})
	if err != nil {
		if strings.Contains(err.Error(), "the local cluster cannot start, missing:") && os.Getenv("PODVM_REQUIRE_INTEGRATION") != "1" {
			t.Skipf("deploy test needs: %v", err)
		}
		t.Fatalf("cluster up: %v\n%s", err, upOut.String())
	}
	phase("cluster up (containerd without the podvm handler)")

	kubectlPath := filepath.Join(o.KubeBinDir, "kubectl")
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := kubectl(stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	podvmCLI := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(e.binDir, "podvm"), args...)
		out, err := cmd.CombinedOutput()
		t.Logf("podvm %s:\n%s", args[0]+" "+args[1], out)
		if err != nil {
			t.Fatalf("podvm %s: %v", strings.Join(args, " "), err)
		}
	}

	// The node before: what uninstall must give back.
	sock := p.ContainerdSocket()
	handlersBefore, err := node.CRIHandlers(ctx, sock)
	if err != nil || slices.Contains(handlersBefore, "podvm") {
		t.Fatalf("containerd before install serves %v (%v): want no podvm handler", handlersBefore, err)
	}
	configBefore := fileSum(t, p.ContainerdConfig())
	dropInsBefore := listDir(p.ContainerdDropInDir())

	// 1. The installer image, pushed to the cluster's registry.
	addr, err := p.RegistryAddr()
	if err != nil {
		t.Fatal(err)
	}
	image := addr + "/podvm/installer:itest"
	podvmCLI("deploy", "image", "--bin-dir", e.binDir, "--image-dir", e.guestDir, "--push", image)
	phase("installer image pushed as %s", image)

	apiServer, err := p.APIServerURL()
	if err != nil {
		t.Fatal(err)
	}
	restart := filepath.Join(e.binDir, "podvm") + " cluster restart-containerd --cluster-dir " + o.Dir
	deployFlags := []string{"--kubeconfig", c.Kubeconfig, "--kubectl", kubectlPath, "--image", image,
		"--prefix", e.prefix, "--containerd-config", p.ContainerdConfig(), "--containerd-dropin-dir", p.ContainerdDropInDir(),
		"--containerd-socket", sock, "--restart-command", restart, "--api-server", apiServer, "--timeout", "4m"}

	// 2. A node without the label never gets podvm pods: with the
	// RuntimeClass alone, a podvm pod stays Pending, unschedulable.
	do := deploy.DefaultOptions()
	do.Image = image
	manifests, err := deploy.Render(do)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(manifests, "\n---\n") {
		if strings.Contains(doc, "\nkind: RuntimeClass\n") {
			must(doc, "apply", "-f", "-")
		}
	}
	must(`apiVersion: v1
kind: Pod
metadata: {name: waits-for-podvm}
spec:
  runtimeClassName: podvm
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: docker.io/library/busybox:1.37, command: [sh, -c, "uname -r; sleep 3600"]}]
`, "apply", "-f", "-")
	deadline := time.Now().Add(10 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		why = must("", "get", "pod", "waits-for-podvm", "-o", `jsonpath={.spec.nodeName}|{.status.phase}|{.status.conditions[?(@.type=="PodScheduled")].reason}`)
		if !strings.HasPrefix(why, "|Pending|") {
			t.Fatalf("before install the podvm pod is %q, want unscheduled and Pending", why)
		}
		time.Sleep(time.Second)
	}
	if why != "|Pending|Unschedulable" {
		t.Fatalf("before install the podvm pod is %q, want Pending with reason Unschedulable", why)
	}
	phase("before install: the podvm pod is Pending, Unschedulable (no node has %s)", deploy.LabelKey)

	// 3. Install through the DaemonSet.
	podvmCLI(append([]string{"deploy", "install"}, deployFlags...)...)
	phase("installed")
	if labels := must("", "get", "node", o.NodeName, "-o", "jsonpath={.metadata.labels}"); !strings.Contains(labels, `"podvm.io/runtime":"ready"`) {
		t.Errorf("node labels after install: %s", labels)
	}
	if h, err := node.CRIHandlers(ctx, sock); err != nil || !slices.Contains(h, "podvm") {
		t.Errorf("containerd after install serves %v (%v), want podvm", h, err)
	}
	if st, err := p.Status(ctx); err != nil || !st.Healthy() {
		t.Errorf("cluster after the containerd restart: %v\n%s", err, st)
	}
	checkNothingPrivilegedStays(t, o.Crictl, sock)
	checkInstallerTokenConfined(t, must, apiServer, o.NodeName)
	phase("the installer's token may change only its own node's %s label; what stays running holds nothing", deploy.LabelKey)

	// The pod that waited is scheduled now, and runs on its own kernel.
	sandboxes := watchPodvmSandboxes(o.Crictl, sock)
	must("", "wait", "--for=condition=Ready", "--timeout=3m", "pod/waits-for-podvm")
	hostKernel, _ := exec.Command("uname", "-r").Output()
	// Ready says the container runs, not that its first line has reached
	// the log yet: with other tests' VMs on the two cores the copy from the
	// guest has been seen to lag. Poll, and say how long it took.
	var got string
	readyAt := time.Now()
	for got == "" && time.Since(readyAt) < 30*time.Second {
		if got = strings.TrimSpace(must("", "logs", "waits-for-podvm")); got == "" {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if lag := time.Since(readyAt); lag > time.Second {
		t.Logf("the podvm pod's first line reached its log %s after Ready", lag.Round(100*time.Millisecond))
	}
	if got == strings.TrimSpace(string(hostKernel)) || got == "" {
		t.Errorf("podvm pod kernel %q, want the guest's (host %s)", got, hostKernel)
	}
	must("", "delete", "pod", "waits-for-podvm", "--wait", "--timeout=2m")
	phase("the waiting pod ran in a VM once the node was labelled")

	// 4. The lift-and-shift spec: an ordinary Deployment under runc, then
	// with only runtimeClassName: podvm, observed to behave the same.
	specLog := filepath.Join(o.Dir, "logs", "spec-lift-and-shift.log")
	spec := exec.CommandContext(ctx, e.spec, "--kubeconfig", c.Kubeconfig, "--runtime-class", "podvm",
		"--ginkgo.label-filter", "lift-and-shift", "--ginkgo.no-color", "--ginkgo.v", "--ginkgo.timeout", "8m")
	logf, err := os.Create(specLog)
	if err != nil {
		t.Fatal(err)
	}
	spec.Stdout, spec.Stderr = logf, logf
	specErr := spec.Run()
	logf.Close()
	b, _ := os.ReadFile(specLog)
	if specErr != nil || !bytes.Contains(b, []byte("Ran 2 of")) {
		t.Fatalf("lift-and-shift spec: %v (log %s):\n%s", specErr, specLog, lastLines(string(b), 60))
	}
	phase("lift-and-shift spec passed: %s", summaryLine(string(b)))
	ids := sandboxes()
	if len(ids) == 0 {
		t.Errorf("saw no podvm sandbox on the node while the pods ran")
	}

	// 5. Uninstall, and the node is as before.
	// The kubeconfig alone: uninstall finds the install's options on the
	// cluster (deploy.Installed).
	podvmCLI("deploy", "uninstall", "--kubeconfig", c.Kubeconfig, "--kubectl", kubectlPath, "--timeout", "4m")
	phase("uninstalled")
	var left []string
	if _, err := os.Stat(filepath.Join(p.ContainerdDropInDir(), "podvm.toml")); err == nil {
		left = append(left, "containerd drop-in podvm.toml")
	}
	if got := listDir(p.ContainerdDropInDir()); !slices.Equal(got, dropInsBefore) {
		left = append(left, fmt.Sprintf("drop-in directory holds %v, before %v", got, dropInsBefore))
	}
	if fileSum(t, p.ContainerdConfig()) != configBefore {
		left = append(left, "containerd's main configuration changed")
	}
	if _, err := os.Stat(e.prefix); err == nil {
		left = append(left, "installation directory "+e.prefix+": "+strings.Join(listDir(e.prefix), " "))
	}
	if labels := must("", "get", "node", o.NodeName, "-o", "jsonpath={.metadata.labels}"); strings.Contains(labels, deploy.LabelKey) {
		left = append(left, "node label: "+labels)
	}
	if out, err := kubectl("", "get", "namespace", deploy.DefaultNamespace, "--ignore-not-found", "-o", "name"); err != nil || out != "" {
		left = append(left, fmt.Sprintf("namespace %s: %q %v", deploy.DefaultNamespace, out, err))
	}
	if out, err := kubectl("", "get", "runtimeclass", "podvm", "--ignore-not-found", "-o", "name"); err != nil || out != "" {
		left = append(left, fmt.Sprintf("RuntimeClass podvm: %q %v", out, err))
	}
	if h, err := node.CRIHandlers(ctx, sock); err != nil || !slices.Equal(h, handlersBefore) {
		left = append(left, fmt.Sprintf("containerd serves %v (%v), before %v", h, err, handlersBefore))
	}
	if st, err := p.Status(ctx); err != nil || !st.Healthy() {
		left = append(left, fmt.Sprintf("cluster not healthy after uninstall: %v\n%s", err, st))
	}
	// Other tests run pod VMs beside this one: only this cluster's
	// sandboxes, and shims of its containerd, are looked for (the cluster
	// is still up: the kubelet's own bind mount of its root directory is
	// not a leftover). The kubelet unmounts a deleted pod's volumes a
	// little after the API forgets it, so leftovers get some seconds to go.
	var leaks []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Second) {
		leaks = slices.DeleteFunc(hostbed.Leaks(o.Dir), func(l string) bool {
			return l == "mount: "+filepath.Join(o.Dir, "kubelet")
		})
		for _, id := range ids {
			leaks = append(leaks, hostbed.Leaks(id)...)
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
	}
	left = append(left, leaks...)
	if len(left) > 0 {
		t.Errorf("the node is not as before the install:\n  %s", strings.Join(left, "\n  "))
	}
	phase("node as before: %d podvm sandboxes checked for leftovers", len(ids))
}

// watchPodvmSandboxes polls the node's CRI for podvm sandboxes until the
// returned function is called, which returns their ids.
func watchPodvmSandboxes(crictl, sock string) func() []string {
	var mu sync.Mutex
	seen := map[string]bool{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			out, err := exec.Command(crictl, "--runtime-endpoint", "unix://"+sock, "pods", "-o", "json").Output()
			if err == nil {
				var list struct {
					Items []struct {
						ID             string `json:"id"`
						RuntimeHandler string `json:"runtimeHandler"`
					} `json:"items"`
				}
				if json.Unmarshal(out, &list) == nil {
					mu.Lock()
					for _, s := range list.Items {
						if s.RuntimeHandler == "podvm" {
							seen[s.ID] = true
						}
					}
					mu.Unlock()
				}
			}
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return func() []string {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		var ids []string
		for id := range seen {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// summaryLine is Ginkgo's "Ran N of M Specs" line.
func summaryLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "Ran ") {
			return l
		}
	}
	return "(no summary)"
}
