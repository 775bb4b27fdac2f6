package qemu

// Integration tests of the hybrid vsock channel: the real guest image
// (its agent finds the virtio-vsock device by itself), vhost-device-vsock
// from the install ($PODVM_PREFIX/libexec/podvm), PATH, or the tools
// cache (ci/install-tools.sh vhost-device-vsock).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/internal/vmtest"
)

// vsockdForTest finds vhost-device-vsock or skips. Hybrid vsock has an
// open bug (docs/design.md, "Agent channel": in 2 of ~90 boots
// vhost-device-vsock answered no CONNECT), so its tests run only when asked
// for: `make test` must stay reliable.
func vsockdForTest(t *testing.T) string {
	t.Helper()
	if os.Getenv("PODVM_TEST_HYBRID_VSOCK") != "1" {
		t.Skip("hybrid vsock is opt-in while its unanswered-CONNECT hang is open: " +
			"set PODVM_TEST_HYBRID_VSOCK=1 (make test-hybrid-vsock)")
	}
	var tried []string
	if prefix := os.Getenv("PODVM_PREFIX"); prefix != "" {
		tried = append(tried, filepath.Join(prefix, "libexec/podvm", vmm.HybridVsockBinaryName))
	}
	if p, err := exec.LookPath(vmm.HybridVsockBinaryName); err == nil {
		tried = append(tried, p)
	}
	cache := os.Getenv("PODVM_CACHE")
	if cache == "" {
		cache = "/var/cache/podvm"
	}
	tried = append(tried, filepath.Join(cache, "tools/vhost-device-vsock-0.3.0/bin", vmm.HybridVsockBinaryName))
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, "no vhost-device-vsock at %s: run `bash ci/install-tools.sh vhost-device-vsock`", strings.Join(tried, " or "))
	return ""
}

// guestImage is the installed guest kernel and initramfs (with the real
// agent), or skips.
func guestImage(t *testing.T) (kernel, initrd string) {
	t.Helper()
	prefix := os.Getenv("PODVM_PREFIX")
	if prefix == "" {
		missing(t, "PODVM_PREFIX not set: the real guest image is needed (make install-dev)")
	}
	kernel, initrd = filepath.Join(prefix, "share/podvm/vmlinux"), filepath.Join(prefix, "share/podvm/initramfs.cpio")
	for _, p := range []string{kernel, initrd} {
		if _, err := os.Stat(p); err != nil {
			missing(t, "guest image: %v (make install-dev)", err)
		}
	}
	return kernel, initrd
}

// startHybrid boots the real guest with transport configured (empty: the
// default) and vhost-device-vsock available.
func startHybrid(t *testing.T, transport contract.Transport) (*VM, hypervisor.Config) {
	t.Helper()
	needRootAndQEMU(t)
	bin := vsockdForTest(t)
	kernel, initrd := guestImage(t)
	cfg := testConfig(t, kernel, initrd, contract.SharedFSVirtiofs)
	cfg.Transport, cfg.MemoryMiB = transport, 512
	vm, err := New(Options{VhostDeviceVsockPath: bin}).Create(context.Background(), cfg)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, vm.Start(ctx))
	t.Cleanup(func() { vm.Stop(context.Background()) })
	return vm.(*VM), cfg
}

// connectAgent waits for the agent and returns its details.
func connectAgent(t *testing.T, vm *VM) *agentclient.Client {
	t.Helper()
	c, err := agentclient.Connect(context.Background(), vm.DialAgent, 60*time.Second, vm.Done())
	if err != nil {
		t.Fatalf("agent: %v; console: %s; vhost-device-vsock.log: %s", err, tailFile(vm.Info().ConsolePath),
			tailFile(vm.Path(vmm.HybridVsockLogName)))
	}
	return c
}

// The default channel with vhost-device-vsock present is hybrid vsock: the
// agent answers over it, vhost-device-vsock runs unprivileged in its own
// 0700 directory (as the VM's jail uid when QEMU is jailed, which the
// jailed QEMU must reach through Landlock), QEMU has no kernel vsock
// device, and Stop leaves nothing.
func TestQEMUHybridVsockIntegration(t *testing.T) {
	vm, cfg := startHybrid(t, "")
	info := vm.Info()
	t.Logf("transport %s (%s)", info.Transport, info.TransportReason)
	if info.Transport != contract.TransportVsock || !strings.Contains(info.TransportReason, "hybrid vsock") {
		t.Fatalf("transport %s (%s), want hybrid vsock", info.Transport, info.TransportReason)
	}
	pids := vm.Pids()
	if len(pids) != 3 {
		t.Fatalf("Pids = %v, want qemu, virtiofsd, vhost-device-vsock", pids)
	}
	vsockd := pids[2]
	wantUID := uint32(hybridVsockUID)
	if j := vm.jailed; j != nil {
		wantUID = j.cred.UID
		t.Logf("QEMU jailed as uid %d", wantUID)
		if uid := procStatus(t, pids[0])["Uid"]; !strings.HasPrefix(uid, fmt.Sprint(wantUID)+" ") {
			t.Errorf("QEMU: Uid %s, want its jail uid %d", uid, wantUID)
		}
	}
	st := procStatus(t, vsockd)
	if uid, want := st["Uid"], strings.Repeat(fmt.Sprint(wantUID)+" ", 4); uid+" " != want || st["CapEff"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
		t.Errorf("vhost-device-vsock: Uid %s, CapEff %s, NoNewPrivs %s; want %d, none, 1", uid, st["CapEff"], st["NoNewPrivs"], wantUID)
	}
	dir, err := os.Stat(filepath.Join(cfg.StateDir, vmm.HybridVsockDirName))
	must(t, err)
	if dir.Mode().Perm() != 0o700 || dir.Sys().(*syscall.Stat_t).Uid != wantUID {
		t.Errorf("vsock dir: %v owned by %d, want 0700 owned by %d", dir.Mode().Perm(), dir.Sys().(*syscall.Stat_t).Uid, wantUID)
	}
	args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
	if !strings.Contains(string(args), "vhost-user-vsock-device") || strings.Contains(string(args), "vhost-vsock-device,") {
		t.Errorf("QEMU's command line has no vhost-user-vsock-device or a kernel vhost-vsock device: %q", args)
	}

	c := connectAgent(t, vm)
	t.Logf("agent on %q, ready %v after the guest kernel started", c.Details.Transport, time.Duration(c.Details.AgentReadyNs))
	if c.Details.Transport != string(contract.TransportVsock) {
		t.Errorf("the agent serves on %q, want vsock", c.Details.Transport)
	}

	attack(t, cfg, true)
	// The first wall open (modes loosened): the attacker reaches the
	// agent's stream, and the second wall (the secret) turns it away.
	loosen(t, cfg)
	attack(t, cfg, false)

	// The shim's session survived the attempts.
	if _, err := c.GuestDetails(context.Background(), &api.GuestDetailsRequest{}); err != nil {
		t.Errorf("GuestDetails after the attacks: %v", err)
	}
	c.Close()
	must(t, vm.Stop(context.Background()))
	assertGone(t, vm, cfg, pids)
	if _, err := os.Stat(filepath.Join(cfg.StateDir, vmm.HybridVsockDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vsock dir after Stop: %v", err)
	}
}

// loosen opens the first wall: the state dir, its parent and the vsock
// dir may be walked by anyone, the agent socket written by anyone.
func loosen(t *testing.T, cfg hypervisor.Config) {
	for p, mode := range map[string]os.FileMode{
		filepath.Dir(cfg.StateDir): 0o711, cfg.StateDir: 0o711, filepath.Join(cfg.StateDir, vmm.HybridVsockDirName): 0o711,
		filepath.Join(cfg.StateDir, vmm.HybridVsockAgentSocket): 0o777,
	} {
		must(t, os.Chmod(p, mode))
	}
}

// attackerUID stands for another pod's (or user's) processes.
const attackerUID = 12345

// attack runs the attacker, another uid in a network namespace of its own
// (another pod), and checks what it got: with walls, nothing; without the
// first wall (loosened), a stream to the agent that refuses it for want
// of the secret.
func attack(t *testing.T, cfg hypervisor.Config, walls bool) {
	t.Helper()
	cmd := exec.Command(attackerBinary(t), "-test.run=^TestHybridVsockAttackerHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "PODVM_TEST_ATTACK="+filepath.Join(cfg.StateDir, vmm.HybridVsockAgentSocket))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET,
		Credential: &syscall.Credential{Uid: attackerUID, Gid: attackerUID, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("attacker: %v", err)
	}
	var got []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if r, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ATTACK "); ok {
			got = append(got, r)
		}
	}
	t.Logf("attacker (walls %v): %q", walls, got)
	want := []string{"unix: permission denied"}
	if !walls {
		want = []string{"unix: reached the agent; auth: refused"}
	}
	for _, cid := range attackCIDs {
		want = append(want, fmt.Sprintf("vsock %d: no", cid))
	}
	if !slices.Equal(got, want) {
		t.Errorf("attacker got %q, want %q; output:\n%s", got, want, out)
	}
}

// attackerBinary is a copy of this test binary that the attacker's uid
// may run (go test's own is in a directory only root may enter).
func attackerBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pvatk")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	b, err := os.ReadFile(os.Args[0])
	must(t, err)
	p := filepath.Join(dir, "attacker.test")
	must(t, os.WriteFile(p, b, 0o755))
	return p
}

// attackCIDs are the guest CIDs the attacker tries over AF_VSOCK: the
// hybrid device's (private to the VM) and ones a kernel device might have.
var attackCIDs = []uint32{vmm.HybridVsockGuestCID, 4, 1000, 0x7fffffff}

// TestHybridVsockAttackerHelper is the attacker process of attack; it
// prints one "ATTACK ..." line per attempt.
func TestHybridVsockAttackerHelper(t *testing.T) {
	path := os.Getenv("PODVM_TEST_ATTACK")
	if path == "" {
		t.Skip("run by attack")
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	switch {
	case errors.Is(err, syscall.EACCES):
		fmt.Println("ATTACK unix: permission denied")
	case err != nil:
		fmt.Println("ATTACK unix:", err)
	default:
		fmt.Println("ATTACK unix: " + attackStream(c))
	}
	for _, cid := range attackCIDs {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: contract.VsockPort})
			unix.Close(fd)
		}
		if err == nil {
			fmt.Printf("ATTACK vsock %d: connected\n", cid)
		} else {
			fmt.Printf("ATTACK vsock %d: no\n", cid)
			t.Logf("vsock %d: %v", cid, err)
		}
	}
}

// attackStream tries the agent's port over a hybrid vsock connection
// with a made-up secret.
func attackStream(c net.Conn) string {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "CONNECT "+strconv.Itoa(contract.VsockPort)+"\n"); err != nil {
		return "CONNECT: " + err.Error()
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OK ") {
		return fmt.Sprintf("CONNECT answered %q, %v", line, err)
	}
	err = contract.HostAuth(struct {
		io.Reader
		io.Writer
	}{r, c}, make([]byte, contract.SecretSize), contract.TransportVsock)
	if errors.Is(err, contract.ErrAuthFailed) {
		return "reached the agent; auth: refused"
	}
	return fmt.Sprintf("reached the agent; auth: %v", err)
}

// vhost-device-vsock dying is the VM's death (the guest lost its agent):
// Done closes with its exit, and QEMU is stopped.
func TestHybridVsockKillIntegration(t *testing.T) {
	vm, cfg := startHybrid(t, "")
	pids := vm.Pids()
	if len(pids) != 3 {
		t.Fatalf("Pids = %v", pids)
	}
	must(t, syscall.Kill(pids[2], syscall.SIGKILL))
	err := waitDone(t, vm, 5*time.Second)
	t.Logf("ExitError: %v", err)
	for _, want := range []string{"vhost-device-vsock for sandbox " + cfg.ID + " exited unexpectedly: signal: killed", "the guest lost its agent channel"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ExitError lacks %q", want)
		}
	}
	waitPidsGone(t, pids)
	must(t, vm.Stop(context.Background()))
	assertGone(t, vm, cfg, pids)
}

// TestQEMUTransportLatencyIntegration: Start to the agent's first answer
// (GuestDetails) over hybrid vsock and over virtio-serial, boots
// interleaved; PODVM_TEST_BOOTS (default 3) of each. The load average is
// logged with each pair.
func TestQEMUTransportLatencyIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 3
	if s := os.Getenv("PODVM_TEST_BOOTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	times := map[contract.Transport][]time.Duration{}
	guest := map[contract.Transport][]time.Duration{}
	order := []contract.Transport{"", contract.TransportSerial}
	for i := 0; i < n; i++ {
		load, _ := os.ReadFile("/proc/loadavg")
		retried := map[contract.Transport]bool{}
		for _, tr := range order {
			start := time.Now()
			vm, _ := startHybrid(t, tr)
			c := connectAgent(t, vm)
			times[tr] = append(times[tr], time.Since(start))
			guest[tr] = append(guest[tr], time.Duration(c.Details.AgentReadyNs))
			retried[tr] = strings.Contains(vmtest.Tail(vm.Info().ConsolePath, 1<<20), "no agent channel yet")
			c.Close()
			must(t, vm.Stop(context.Background()))
		}
		slices.Reverse(order) // neither goes first every time
		t.Logf("boot %d: hybrid %v (guest ready %v, agent waited for its channel: %v), serial %v (guest ready %v, waited: %v); load %s", i+1,
			times[""][i].Round(time.Millisecond), guest[""][i].Round(time.Millisecond), retried[""],
			times[contract.TransportSerial][i].Round(time.Millisecond), guest[contract.TransportSerial][i].Round(time.Millisecond),
			retried[contract.TransportSerial], strings.Join(strings.Fields(string(load))[:3], " "))
	}
	for _, tr := range []contract.Transport{"", contract.TransportSerial} {
		ts := slices.Clone(times[tr])
		slices.Sort(ts)
		name := map[contract.Transport]string{"": "hybrid vsock", contract.TransportSerial: "serial"}[tr]
		t.Logf("%s: median %v, min %v, max %v over %d boots", name, ts[len(ts)/2].Round(time.Millisecond),
			ts[0].Round(time.Millisecond), ts[len(ts)-1].Round(time.Millisecond), len(ts))
	}
}
