package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	"github.com/podvm/podvm/runtime/factory/hold"
)

// templateHandler is the runtime handler whose pods are clones of a VM
// template (factory.mode = "template", docs/factory.md).
const templateHandler = "podvm-template"

// TestCRITemplateSmokeIntegration runs pods of the template handler
// through CRI beside a pod of the default handler (factory "none"): the
// first template pod saves the template and both are clones of it (the
// shim's log says so for each; a pod that silently booted fails the
// test), with the pod network (reached from the host at the pod's IP, so
// the guest took the pod's MAC), exec, an OOM kill, stats, a killed
// container, port-forward, boot ids of their own, and nothing left behind:
// no pod, no process of a clone or of the template's save, and the
// template's holder the one process left. Each clone's QEMU is jailed:
// it runs as a uid other than root, without capabilities.
func TestCRITemplateSmokeIntegration(t *testing.T) {
	h, tools, tplDir := startTemplateHarness(t)
	c := h.c

	podA, tookA := h.runPodOn(templateHandler, "tpl-a")
	podB, tookB := h.runPodOn(templateHandler, "tpl-b")
	podN, tookN := h.runPodOn("podvm", "none-c")
	t.Logf("RunPodSandbox: template, first (saves the template) %s; template, clone %s; none %s",
		tookA.Round(time.Millisecond), tookB.Round(time.Millisecond), tookN.Round(time.Millisecond))
	requireCloned(t, c.LogPath, podA, podB)
	for _, pod := range []string{podA, podB} {
		requireJailed(t, pod)
	}
	if clonedIn(readFile(t, c.LogPath), podN) {
		t.Errorf("the pod of the factory-less handler was cloned")
	}

	smokeFactoryPods(t, h, tools, []string{podA, podB, podN}, podB, func(pod, podCfg, ctr string) {
		checkWrites(t, h, pod, podCfg, ctr)
	})
	// The template's holder outlives the pods; it is the one process
	// left, and `podvm factory clean` stops it.
	if n := stopHolders(tplDir); n != 1 {
		t.Errorf("%d VM template holders ran, want 1", n)
	}
	if procs := processesMentioning(tplDir); len(procs) > 0 {
		t.Errorf("processes still use the template dir %s: %q", tplDir, procs)
	}
}

// smokeFactoryPods is the CRI smoke of a factory mode's pods: in each pod a
// web server serving its boot_id, which must differ between pods and
// answer over the pod's network (a factory VM's NIC answers for the pod's
// MAC); in pod full also port-forward, OOM, stats, kill and extra. Then
// every pod is removed and must leave nothing (per pod, not c.CRILeaks:
// the CNI result dir is the host's, and other test beds may have left
// results there).
func smokeFactoryPods(t *testing.T, h *criHarness, tools *criTools, pods []string, full string, extra func(pod, podCfg, ctr string)) {
	web := h.containerConfig("web", nil, "sh", "-c",
		"mkdir -p /www && cat /proc/sys/kernel/random/boot_id > /www/index.html && exec httpd -f -p 8080 -h /www")
	bootIDs := map[string]string{}
	for _, pod := range pods {
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
		if pod == full {
			checkPortForward(t, h, tools, pod, id)
			checkOOMStatsKill(t, h, pod, podCfg, ctr)
			if extra != nil {
				extra(pod, podCfg, ctr)
			}
		}
	}
	for _, pod := range pods {
		h.crictl("stopp", pod)
		h.crictl("rmp", pod)
		assertNoLeaks(t, pod)
	}
	if left := h.crictl("pods", "--quiet") + h.crictl("ps", "--all", "--quiet"); left != "" {
		t.Errorf("CRI still lists: %s", left)
	}
}

// startTemplateHarness is startCRIHarness with a third handler,
// templateHandler, whose templates live in tplDir (removed at the end,
// their holders stopped).
func startTemplateHarness(t *testing.T) (h *criHarness, tools *criTools, tplDir string) {
	env := requireEnv(t)
	tools = requireCRI(t)
	tplDir, err := os.MkdirTemp("", "podvm-tpl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tplDir) })
	t.Cleanup(func() { stopHolders(tplDir) })
	cfg := templateConfig(t, env.ConfigPath, tplDir)
	c := startCRI(t, env, tools, hostbed.PodvmHandler(templateHandler, env.ShimBinary, cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	h = &criHarness{t: t, c: c, dir: t.TempDir(), ctx: ctx}
	h.crictl("pull", criBusybox)
	return h, tools, tplDir
}

// templateConfig is the install's config with factory.mode = "template"
// and the share by 9p, which templates need; PODVM_TEST_TEMPLATE_JAIL_OFF=1
// also turns QEMU's jail off, PODVM_TEST_TEMPLATE_ALLOW_SETID=1 the 9p
// proxy helper's set-id filter.
func templateConfig(t *testing.T, base, tplDir string) string {
	t.Helper()
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^shared_fs = .*$`).ReplaceAllString(string(b), `shared_fs = "9p"`)
	if !strings.Contains(text, `shared_fs = "9p"`) || strings.Contains(text, "\n[factory]\nmode = \"template\"") {
		t.Fatalf("cannot make a template config from %s", base)
	}
	text = regexp.MustCompile(`(?m)^mode = "none"$`).ReplaceAllString(text, `mode = "template"`)
	text = regexp.MustCompile(`(?m)^template_dir = .*$`).ReplaceAllString(text, fmt.Sprintf("template_dir = %q", tplDir))
	if os.Getenv("PODVM_TEST_TEMPLATE_JAIL_OFF") == "1" {
		// To show that requireJailed fails with QEMU's jail off.
		text = regexp.MustCompile(`(?m)^jail = true$`).ReplaceAllString(text, "jail = false")
	}
	if os.Getenv("PODVM_TEST_TEMPLATE_ALLOW_SETID") == "1" {
		// To show that TestBoundaryGuestSetuidIntegration/clone fails
		// without the filter.
		text = regexp.MustCompile(`(?m)^allow_guest_setid = false$`).ReplaceAllString(text, "allow_guest_setid = true")
		if !strings.Contains(text, "\nallow_guest_setid = true") {
			t.Fatalf("the install's config %s has no allow_guest_setid to set", base)
		}
	}
	if !strings.Contains(text, `mode = "template"`) || !strings.Contains(text, tplDir) {
		t.Fatalf("the install's config %s has no [factory] table to set", base)
	}
	p := filepath.Join(t.TempDir(), "podvm-template.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runPodOn starts pod name on handler, with removal and leak check at the
// end, and says how long RunPodSandbox took.
func (h *criHarness) runPodOn(handler, name string) (string, time.Duration) {
	h.t.Helper()
	return h.runPodFrom(handler, h.podConfig(name, nil))
}

// requireCloned fails the test unless the shim logged a clone for each
// pod and no fall-back to a boot.
func requireCloned(t *testing.T, logPath string, pods ...string) {
	t.Helper()
	log := readFile(t, logPath)
	if n := strings.Count(log, `msg="VM template saved"`); n != 1 {
		t.Errorf("the template was saved %d times, want once", n)
	}
	for _, pod := range pods {
		if !clonedIn(log, pod) {
			t.Errorf("pod %s: no clone in the shim's log (booted instead?); its lines:\n%s", pod, linesWith(log, pod))
		}
		for _, l := range strings.Split(linesWith(log, pod), "\n") {
			if strings.Contains(l, "not cloned from a VM template") {
				t.Errorf("pod %s fell back to a boot: %s", pod, l)
			}
		}
	}
}

func clonedIn(log, pod string) bool {
	for _, l := range strings.Split(linesWith(log, pod), "\n") {
		if strings.Contains(l, "pod VM cloned from a VM template") {
			return true
		}
	}
	return false
}

func linesWith(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// podStatus is what crictl inspectp says of a pod that this test reads.
type podStatus struct {
	Status struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
	} `json:"status"`
}

func inspectPod(t *testing.T, h *criHarness, pod string) podStatus {
	t.Helper()
	var s podStatus
	if err := json.Unmarshal([]byte(h.crictl("inspectp", "-o", "json", pod)), &s); err != nil {
		t.Fatalf("crictl inspectp %s: %v", pod, err)
	}
	return s
}

func podIP(t *testing.T, h *criHarness, pod string) string {
	t.Helper()
	ip := inspectPod(t, h, pod).Status.Network.IP
	if ip == "" {
		t.Fatalf("pod %s has no IP", pod)
	}
	return ip
}

func podName(t *testing.T, h *criHarness, pod string) string {
	t.Helper()
	return inspectPod(t, h, pod).Status.Metadata.Name
}

// httpGet fetches url, retrying while the server starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return string(b)
		}
		last = fmt.Errorf("status %s, body %q, %v", resp.Status, b, err)
	}
	t.Errorf("GET %s: %v", url, last)
	return ""
}

// checkPortForward reaches the pod's port 8080 through `crictl
// port-forward`, which gives the CRI's connection in the pod's netns to
// the shim's forwarder (runtime/portforward).
func checkPortForward(t *testing.T, h *criHarness, tools *criTools, pod, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools.Crictl, "--runtime-endpoint", h.c.CRIEndpoint(), "port-forward", pod, "0:8080")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	local := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := local.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, out)
			if got := httpGet(t, "http://127.0.0.1:"+m[1]+"/"); strings.TrimSpace(got) != want {
				t.Errorf("port-forward to pod %s: %q, want %s", pod, got, want)
			}
			return
		}
	}
	t.Errorf("crictl port-forward %s printed no local port", pod)
}

// checkOOMStatsKill: a container past its limit is OOMKilled while the
// pod's web container runs on and has stats; a killed container exits 137.
func checkOOMStatsKill(t *testing.T, h *criHarness, pod, podCfg, web string) {
	t.Helper()
	hogCfg := h.containerConfig("hog", map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}},
		"sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=128M count=1")
	hog := h.startContainer(pod, podCfg, hogCfg)
	h.waitFor("hog exits", 90*time.Second, func() bool { return h.inspect(hog).Status.State == "CONTAINER_EXITED" })
	if s := h.inspect(hog).Status; s.Reason != "OOMKilled" || s.ExitCode != 137 {
		t.Errorf("hog ended with reason %q, exit %d; want OOMKilled, 137", s.Reason, s.ExitCode)
	}
	// The guest cgroup's working set of the running container, not zero.
	workingSet := regexp.MustCompile(`"workingSetBytes":\s*\{\s*"value":\s*"[1-9][0-9]*"`)
	if out := h.crictl("stats", "-o", "json", "--id", web); !workingSet.MatchString(out) {
		t.Errorf("crictl stats of web has no working set: %s", out)
	}
	sleeper := h.startContainer(pod, podCfg, h.containerConfig("sleeper", nil, "sleep", "1000"))
	h.crictl("stop", "--timeout", "0", sleeper)
	if s := h.inspect(sleeper).Status; s.State != "CONTAINER_EXITED" || s.ExitCode != 137 {
		t.Errorf("killed container: %s, exit %d; want CONTAINER_EXITED, 137", s.State, s.ExitCode)
	}
	if s := h.inspect(web).Status; s.State != "CONTAINER_RUNNING" {
		t.Errorf("web is %s after the OOM kill and the kill beside it", s.State)
	}
}

// checkWrites writes into a volume of the pod the way the lift-and-shift
// spec's pod does (spec/liftshift_test.go): a volume of the group 2000 with
// setgid, like an emptyDir of fsGroup 2000; a root container creates,
// makes a directory, chowns and links; then a container of uid 1000 creates,
// renames, makes a directory and links, and reads it all back. On a clone
// every one of these goes through the 9p proxy helper, which used to die of
// SIGABRT at the second container's first create (docs/factory.md, section
// 7). The pod's VM and its helper must still run after.
func checkWrites(t *testing.T, h *criHarness, pod, podCfg, web string) {
	t.Helper()
	vol := hostVolume(t)
	if err := os.Chown(vol, 0, 2000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(vol, os.ModeSetgid|0o777); err != nil {
		t.Fatal(err)
	}
	run := func(name string, sc map[string]any, script string) {
		ctr := h.startContainer(pod, podCfg, h.writeJSON(name+".json", map[string]any{
			"metadata": map[string]string{"name": name},
			"image":    map[string]string{"image": criBusybox},
			"command":  []string{"sh", "-c", script},
			"log_path": name + ".log",
			"linux":    map[string]any{"security_context": sc},
			"mounts":   []map[string]any{{"container_path": "/data", "host_path": vol}},
		}))
		h.waitFor(name+" exits", 60*time.Second, func() bool { return h.inspect(ctr).Status.State == "CONTAINER_EXITED" })
		if s := h.inspect(ctr).Status; s.ExitCode != 0 {
			log, _ := os.ReadFile(filepath.Join(h.dir, "logs", podName(t, h, pod), name+".log"))
			t.Errorf("%s exited %d: %s", name, s.ExitCode, log)
		}
	}
	run("init-writer", nil, "echo init > /data/init.txt && mkdir /data/conf && echo c > /data/conf/app.conf && "+
		"chown 1000 /data/init.txt && ln -s conf/app.conf /data/conf.link")
	user := map[string]any{"run_as_user": map[string]any{"value": 1000}, "run_as_group": map[string]any{"value": 1000}}
	run("app-writer", user, "echo app > /data/app.tmp && mv /data/app.tmp /data/app.txt && mkdir /data/own && "+
		"echo own > /data/own/f && ln -s app.txt /data/app.link && cat /data/init.txt /data/app.link /data/conf.link /data/own/f")
	for path, want := range map[string][2]uint32{
		"init.txt": {1000, 2000}, "conf": {0, 2000}, "conf/app.conf": {0, 2000}, "conf.link": {0, 2000},
		"app.txt": {1000, 2000}, "own": {1000, 2000}, "own/f": {1000, 2000}, "app.link": {1000, 2000},
	} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(vol, path), &st); err != nil {
			t.Errorf("the pod's %s: %v", path, err)
		} else if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("the pod's %s is %d:%d on the host; want %d:%d", path, st.Uid, st.Gid, want[0], want[1])
		}
	}
	if out := h.crictl("exec", web, "cat", "/proc/sys/kernel/random/boot_id"); out == "" {
		t.Errorf("pod %s: no answer after the writes", pod)
	}
	if n := proxyHelpers(pod); n != 1 {
		t.Errorf("pod %s: %d 9p proxy helpers run after the writes; want 1", pod, n)
	}
}

// proxyHelpers counts the 9p proxy helpers serving pod's share.
func proxyHelpers(pod string) int {
	n := 0
	for _, p := range processesMentioning(pod) {
		if strings.Contains(p, "virtfs-proxy-helper") {
			n++
		}
	}
	return n
}

// processesMentioning lists processes whose command line contains s.
func processesMentioning(s string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// requireJailed fails unless the pod's QEMU runs as a uid other than root
// with no effective capability, as a booted VM's does.
func requireJailed(t *testing.T, pod string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(hostbed.DefaultStateDir, "sandboxes", pod, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	st := procStatus(t, pid)
	t.Logf("pod %s: QEMU (pid %d) Uid %s, Gid %s, CapEff %s", pod, pid, st["Uid"], st["Gid"], st["CapEff"])
	for _, uid := range strings.Fields(st["Uid"]) {
		if uid == "0" {
			t.Errorf("pod %s: its clone's QEMU runs as root (Uid %s): not jailed", pod, st["Uid"])
			break
		}
	}
	if st["CapEff"] != "0000000000000000" {
		t.Errorf("pod %s: its clone's QEMU has capabilities %s", pod, st["CapEff"])
	}
}

// stopHolders stops the holder of every template under dir and says how
// many ran.
func stopHolders(dir string) int {
	marks, _ := filepath.Glob(filepath.Join(dir, "*", "template.json"))
	n := 0
	for _, m := range marks {
		if hold.Running(filepath.Dir(m)) != 0 {
			n++
		}
		hold.Stop(filepath.Dir(m))
	}
	return n
}
