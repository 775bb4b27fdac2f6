package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/internal/hostbed"
)

// connectAs dials the unix socket path with the file-system identity of
// uid (setfsuid on a thread of its own): what an unprivileged host user
// would get. The thread gets root's identity back and is released, not
// thrown away: a thread that ends sends its children's parent-death signal,
// and the test's containerd is started with Pdeathsig (internal/hostbed) from
// whichever thread happened to run the start, possibly this one.
func connectAs(uid int, path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			} // else the thread ends with this goroutine, as it must
		}()
		unix.Setfsuid(uid)
		unix.Setfsgid(uid)
		if got, _ := unix.SetfsuidRetUid(-1); got != uid {
			errc <- fmt.Errorf("setfsuid(%d) did not take (fsuid %d)", uid, got)
		} else {
			c, err := net.DialTimeout("unix", path, 2*time.Second)
			if err == nil {
				c.Close()
			}
			errc <- err
		}
		unix.Setfsuid(0)
		unix.Setfsgid(0)
		fsuid, _ := unix.SetfsuidRetUid(-1)
		fsgid, _ := unix.SetfsgidRetGid(-1)
		restored = fsuid == 0 && fsgid == 0
	}()
	return <-errc
}

// TestBoundaryAgentChannelIntegration: the agent's channel, and the VMM's
// other control sockets, are reachable only by the shim's user (root):
// each sandbox's state directory is root's (or its jailed QEMU's) alone, and an unprivileged
// user's connect to every socket in it is refused. Over vsock any host
// process can connect to a guest's CID, which no file permission guards:
// there the test skips, saying so.
func TestBoundaryAgentChannelIntegration(t *testing.T) {
	p := newPodvmCtr(t)
	id := "podvm-boundary-chan"
	ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
	defer cancel()
	if r := p.c.Ctr(ctx, nil, "run", "-d", "--runtime", p.env.ShimBinary, "--runtime-config-path", p.env.ConfigPath, p.image, id, "sleep", "1000"); r.ExitCode != 0 {
		t.Fatalf("ctr run -d: exit %d, %s", r.ExitCode, r.Stderr)
	}
	t.Cleanup(func() {
		for i, args := range [][]string{{"task", "kill", "-s", "SIGKILL", id}, {"task", "rm", "-f", id}, {"container", "rm", id}} {
			if r := p.c.Ctr(context.Background(), nil, args...); r.ExitCode != 0 {
				// Said, so that a leak report below comes with its cause.
				t.Logf("clean-up: ctr %s: exit %d: %s", strings.Join(args, " "), r.ExitCode, strings.TrimSpace(r.Stderr))
			}
			if i == 0 {
				time.Sleep(500 * time.Millisecond)
			}
		}
		assertNoLeaks(t, id)
	})
	transport, hybrid := "", false
	for _, l := range p.c.LogLines() {
		if strings.Contains(l, "pod VM started") && strings.Contains(l, id) {
			if i := strings.Index(l, " transport="); i >= 0 {
				transport = strings.Fields(l[i+len(" transport="):])[0]
			}
			hybrid = strings.Contains(l, `transport_reason="hybrid vsock`)
		}
	}
	if transport == "vsock" && !hybrid {
		t.Skip("the agent channel is vsock (this host has /dev/vhost-vsock): any host process may connect to a guest CID and no file permission can stop it; see docs/reliability.md")
	}
	if transport != "serial" && !hybrid {
		t.Fatalf("the shim did not log the agent transport of %s (got %q)", id, transport)
	}

	dir := filepath.Join(hostbed.DefaultStateDir, "sandboxes", id)
	// A jailed QEMU owns its sandbox's directory (docs/design.md, "QEMU's
	// jail"): its uid is the pod's own, so the directory is still closed
	// to every other user.
	qemuUID := pidUID(t, filepath.Join(dir, "qemu.pid"))
	for _, d := range []string{dir, filepath.Dir(dir)} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		t.Logf("%s: %v, owner %d (QEMU's uid %d)", d, st.Mode().Perm(), sys.Uid, qemuUID)
		owners := "root's alone"
		ok := sys.Uid == 0
		if d == dir {
			owners, ok = "root's or QEMU's alone", ok || sys.Uid == qemuUID
		}
		if !ok || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v owned by %d: want %s (0700)", d, st.Mode().Perm(), sys.Uid, owners)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	hybridSocks, _ := filepath.Glob(filepath.Join(dir, "vsock", "*.sock")) // hybrid vsock's
	socks = append(socks, hybridSocks...)
	sort.Strings(socks)
	if len(socks) < 2 {
		t.Fatalf("sockets of %s: %v; want at least the agent's and QMP's", id, socks)
	}
	for _, s := range socks {
		err := connectAs(65534, s)
		t.Logf("connect to %s as uid 65534: %v", filepath.Base(s), err)
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("uid 65534 connecting to %s: %v; want permission denied", s, err)
		}
	}
}

// pidUID is the real uid of the process whose pid file is path.
func pidUID(t *testing.T, path string) uint32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strings.TrimSpace(string(b)), &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

// TestBoundaryGuestReachIntegration: nothing in a pod VM reaches a host's
// local sockets: not a unix socket in a volume shared into the pod (the
// guest kernel sees an inode, not the host's socket; under runc the same
// container connects), not a TCP listener on the host's loopback, not the
// host over vsock (CID 2). The probe's exit code comes back through crictl
// as 1; its output says how the connect failed.
func TestBoundaryGuestReachIntegration(t *testing.T) {
	h := startCRIHarness(t)
	h.crictl("pull", hostbed.ProbeImage)
	vol := t.TempDir()
	os.Chmod(vol, 0o777)
	sock := filepath.Join(vol, "host.sock")
	var accepted atomic.Int32
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	for _, l := range []net.Listener{ul, tl} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
	}
	probeCfg := func(name string) string {
		return h.writeJSON(name+".json", map[string]any{
			"metadata": map[string]string{"name": name},
			"image":    map[string]string{"image": hostbed.ProbeImage},
			"command":  []string{"sleep", "100000"},
			"log_path": name + ".log",
			"mounts":   []map[string]any{{"container_path": "/vol", "host_path": vol}},
		})
	}
	probe := func(ctr string, args ...string) cmdResult {
		return h.c.Crictl(h.ctx, append([]string{"exec", ctr, "/usr/local/bin/probe"}, args...)...)
	}

	// The reference: under runc the container reaches the host's socket.
	runcPodCfg := h.podConfig("reach-runc", nil)
	runcPod := h.crictl("runp", "--runtime", "runc", runcPodCfg)
	runcCtr := h.startContainer(runcPod, runcPodCfg, probeCfg("reach-runc-probe"))
	r := probe(runcCtr, "unix", "/vol/host.sock")
	t.Logf("runc container, unix socket in a volume: %s", strings.TrimSpace(r.Stdout))
	if r.ExitCode != 0 || accepted.Load() != 1 {
		t.Fatalf("the probe under runc did not reach the host socket (exit %d, %s %s): the test cannot tell", r.ExitCode, r.Stdout, r.Stderr)
	}
	h.crictl("rmp", "-f", runcPod)

	podCfg := h.podConfig("reach-podvm", nil)
	pod := h.runPod(podCfg)
	ctr := h.startContainer(pod, podCfg, probeCfg("reach-podvm-probe"))
	for _, c := range []struct{ what, kind, addr string }{
		{"unix socket in a shared volume", "unix", "/vol/host.sock"},
		{"TCP on the host's loopback", "tcp", tl.Addr().String()},
		{"the host over vsock", "vsock", "2 1024"},
	} {
		r := probe(ctr, append([]string{c.kind}, strings.Fields(c.addr)...)...)
		t.Logf("podvm guest, %s: exit %d, %s", c.what, r.ExitCode, strings.TrimSpace(r.Stdout))
		if r.ExitCode == 0 || !strings.HasPrefix(strings.TrimSpace(r.Stdout), "failed:") {
			t.Errorf("%s from the guest: exit %d, %s %s; want it to fail", c.what, r.ExitCode, r.Stdout, r.Stderr)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the host's listeners accepted %d connections; only runc's was expected", n)
	}
}

// TestBoundarySharedDirIntegration: the directory shared into a pod VM
// exposes what the pod owns and nothing else, read-only where the spec
// says so. A privileged container (root of the guest, as a compromised
// guest would be) mounts the share itself and finds: only its own pod's
// containers (a neighbour pod's are not there), a top level it cannot
// write, so it cannot plant a file or a symlink where the shim will make a
// mount point next, the pod's read-only volume read-only, its read-write
// volume writable; and the volumes' host contents survive the pod.
func TestBoundarySharedDirIntegration(t *testing.T) {
	h := startCRIHarness(t)
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(rw, "rw-marker"), []byte("rw\n"), 0o644)
	os.WriteFile(filepath.Join(ro, "ro-marker"), []byte("ro\n"), 0o644)

	neighbourCfg := h.podConfig("share-neighbour", nil)
	neighbour := h.runPod(neighbourCfg)
	neighbourCtr := h.startContainer(neighbour, neighbourCfg, h.containerConfig("neighbour", nil, "sleep", "100000"))

	// Privileged in the guest's root pid namespace (pid 2, NODE): the
	// agent's mount of the share is at /proc/1/root/run/podvm/shared.
	// (Mounting the virtio-fs tag a second time in the guest attaches to
	// one of its submounts' superblocks, not the share's root.)
	guestRoot := map[string]any{"privileged": true, "namespace_options": map[string]any{"pid": 2}}
	podCfg := h.podConfig("share-pod", map[string]any{"security_context": guestRoot})
	pod := h.runPod(podCfg)
	inspectorCfg := h.writeJSON("inspector.json", map[string]any{
		"metadata": map[string]string{"name": "inspector"},
		"image":    map[string]string{"image": criBusybox},
		"command":  []string{"sleep", "100000"},
		"log_path": "inspector.log",
		"linux":    map[string]any{"security_context": guestRoot},
		"mounts": []map[string]any{
			{"container_path": "/rw", "host_path": rw},
			{"container_path": "/ro", "host_path": ro, "readonly": true},
		},
	})
	inspector := h.startContainer(pod, podCfg, inspectorCfg)
	sh := func(script string) cmdResult { return h.c.Crictl(h.ctx, "exec", inspector, "sh", "-c", script) }

	if r := sh("ln -s /proc/1/root/run/podvm/shared /share && ls /share/"); r.ExitCode != 0 {
		t.Fatalf("the agent's share from the guest: %s%s", r.Stdout, r.Stderr)
	}
	listed := strings.Fields(sh("ls /share/").Stdout)
	sort.Strings(listed)
	want := []string{pod, inspector}
	sort.Strings(want)
	t.Logf("the share holds %v", listed)
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Errorf("the share holds %v; want the pod's own containers %v", listed, want)
	}
	for _, other := range []string{neighbour, neighbourCtr} {
		if strings.Contains(strings.Join(listed, " "), other) {
			t.Errorf("the neighbour pod's %s is visible in this pod's share", other)
		}
	}
	for _, attempt := range []struct{ what, script string }{
		{"a file at the top", "echo x > /share/planted"},
		{"a symlink where a container's directory would go", "ln -s / /share/next-container"},
		{"a symlink where a volume's mount point would go", "ln -s /etc /share/" + inspector + "/mounts/99"},
		{"a directory in a container's directory", "mkdir /share/" + inspector + "/planted"},
		// The pause container's spec has root.readonly (containerd sets it):
		// its rootfs is sealed on the host side too, not only in the guest.
		{"a file in a read-only root filesystem", "echo x > /share/" + pod + "/rootfs/planted"},
	} {
		r := sh(attempt.script)
		why := lastLine(r.Stderr)
		for _, l := range strings.Split(r.Stderr, "\n") {
			if strings.Contains(l, "Read-only") {
				why = strings.TrimSpace(l)
			}
		}
		t.Logf("guest plants %s: %s", attempt.what, why)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Errorf("the guest could plant %s in the share (exit %d, %s)", attempt.what, r.ExitCode, r.Stderr)
		}
	}
	// The volumes, through the raw share and through the container's own
	// mounts.
	script := `for d in /share/` + inspector + `/mounts/*; do
		if [ -e $d/ro-marker ]; then touch $d/probe 2>/dev/null && echo ro-share:writable || echo ro-share:readonly; fi
		if [ -e $d/rw-marker ]; then touch $d/probe 2>/dev/null && echo rw-share:writable || echo rw-share:readonly; fi
	done
	touch /ro/probe 2>/dev/null && echo ro:writable || echo ro:readonly
	echo guest > /rw/from-guest && echo rw:writable || echo rw:readonly`
	got := strings.Fields(sh(script).Stdout)
	sort.Strings(got)
	wantVols := []string{"ro-share:readonly", "ro:readonly", "rw-share:writable", "rw:writable"}
	if strings.Join(got, " ") != strings.Join(wantVols, " ") {
		t.Errorf("volumes from the guest: %v; want %v", got, wantVols)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "from-guest")); err != nil || string(b) != "guest\n" {
		t.Errorf("the read-write volume on the host: %q, %v", b, err)
	}

	h.crictl("rmp", "-f", pod)
	assertNoLeaks(t, pod)
	for _, f := range []string{filepath.Join(rw, "rw-marker"), filepath.Join(rw, "from-guest"), filepath.Join(ro, "ro-marker")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("a volume lost %s when the pod went: %v", f, err)
		}
	}
}
