package qemu

// Integration tests: they boot real VMs under this host's accelerator (TCG
// here). They need root, QEMU, busybox-static (for a tiny initramfs) and a
// guest kernel, the first found of: $PODVM_TEST_KERNEL,
// $PODVM_PREFIX/share/podvm/vmlinux (`make install-dev`),
// /var/cache/podvm/dev/vmlinux. Missing prerequisites skip the tests with the
// reason, or fail them under PODVM_REQUIRE_INTEGRATION=1 (`make test`).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/vmtest"
	"golang.org/x/sys/unix"
)

func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	vmtest.Missing(t, format, args...)
}

func testKernel(t *testing.T) string { return vmtest.Kernel(t) }

func needRootAndQEMU(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (virtiofsd, bind mounts)")
	}
	if _, err := exec.LookPath(qemuBinaryName); err != nil {
		missing(t, "%s not on PATH: apt-get install qemu-system-x86", qemuBinaryName)
	}
}

// guestPreamble starts a test guest's /init: the kernel filesystems, the
// shell function auth (guestAuth: the agent's check of the host's secret)
// and $port, the agent's virtio-serial port. It is not a format string.
const guestPreamble = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
` + guestAuth + `
port=
for d in /sys/class/virtio-ports/*; do
	[ "$(cat $d/name)" = podvm.agent ] && port=/dev/${d##*/}
done
`

// guestInit is the test guest's /init (after guestPreamble; MOUNT_ARGS is
// the share's file system type and options): it mounts the share, does the
// agent's side of the handshake (ready line, hello, its echo, then auth),
// says hello-from-guest, waits for a line from the host (sent after
// the host bind-mounted "late" into the share) and answers with a listing of
// the share, on the port and on the console.
const guestInit = guestPreamble + `echo "agent port: $port"
mkdir -p /mnt
mount -t MOUNT_ARGS podvm /mnt || echo MOUNT-FAILED
exec 3<>$port
printf 'podvm-agent ready\n' >&3
read -r hello <&3
printf 'podvm-ok %s\n' "${hello#podvm-hello }" >&3
auth
echo hello-from-guest >&3
read -r cmd <&3
{ echo LISTING-BEGIN; ls /mnt /mnt/late; cat /mnt/early.txt /mnt/late/inside.txt; echo LISTING-END; } >/listing 2>&1
cat /listing
cat /listing >&3
# The host says bye and hangs up; greet the next host as the agent would.
read -r cmd <&3
sleep 1
printf 'podvm-agent ready\n' >&3
read -r hello <&3
printf 'podvm-ok %s\n' "${hello#podvm-hello }" >&3
auth
while true; do sleep 3600; done
`

// guestAuth is the agent's side of contract.GuestAuth in busybox shell,
// for the test guests: auth, after the handshake on fd 3, sends a
// challenge and accepts the host's answer only if it is
// HMAC-SHA256(secret, label 0 challenge 0 "serial" 0). HMAC is spelt out
// (RFC 2104: two hashes over the key XOR 0x36 and 0x5c, padded to 64
// bytes) since busybox has sha256sum but no HMAC.
const guestAuth = `
secret=/sys/firmware/qemu_fw_cfg/by_name/opt/io.podvm/secret/raw
hex() { od -An -v -tx1 | tr -d ' \n'; }
key=$(hex <$secret)
echo "agent secret: ${#key} hex digits read through fw_cfg"
label=$(printf podvm-agent-auth-v1 | hex)
transport=$(printf serial | hex)
H=0123456789abcdef
esc() { echo "$1" | sed 's/../\\x&/g'; }
xorpad() {
	k=${1}0000000000000000000000000000000000000000000000000000000000000000; out=
	while [ -n "$k" ]; do
		v=$((0x${k%"${k#??}"} ^ $2)); k=${k#??}
		out="$out\\x${H:$((v>>4)):1}${H:$((v&15)):1}"
	done
	echo "$out"
}
hmac() {
	i=$({ printf "$(xorpad $1 54)"; printf "$(esc $2)"; } | sha256sum)
	o=$({ printf "$(xorpad $1 92)"; printf "$(esc ${i%% *})"; } | sha256sum)
	echo ${o%% *}
}
auth() {
	ch=$(od -An -v -tx1 -N32 /dev/urandom | tr -d ' \n')
	printf 'podvm-challenge %s\n' $ch >&3
	want=$(hmac $key "${label}00${ch}00${transport}00")
	read -r ans <&3
	if [ "$ans" != "podvm-answer $want" ]; then echo "AUTH-FAILED: $ans"; return 1; fi
	echo "host authenticated"
	printf 'podvm-accepted\n' >&3
}
`

var guestApplets = []string{"sh", "mount", "mkdir", "cat", "echo", "ls", "sleep", "true",
	"od", "tr", "sed", "sha256sum"}

// buildInitramfs writes a newc cpio archive with busybox and guestInit.
func buildInitramfs(t *testing.T, sharedFS string) string {
	t.Helper()
	mountArgs := "virtiofs"
	if sharedFS == contract.SharedFS9p {
		mountArgs = "9p -o trans=virtio,version=9p2000.L"
	}
	return buildInitramfsWith(t, strings.ReplaceAll(guestInit, "MOUNT_ARGS", mountArgs))
}

// buildInitramfsWith writes a newc cpio archive with busybox and init.
func buildInitramfsWith(t *testing.T, init string) string {
	return vmtest.BusyboxInitramfs(t, guestApplets, map[string]string{"init": init})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testConfig returns a config with a short state dir (unix socket paths).
func testConfig(t *testing.T, kernel, initrd, sharedFS string) hypervisor.Config {
	dir, err := os.MkdirTemp("/tmp", "pvq")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	shared := filepath.Join(dir, "shared")
	must(t, os.Mkdir(shared, 0o755))
	return hypervisor.Config{
		ID: "it-" + filepath.Base(dir), StateDir: filepath.Join(dir, "state"),
		KernelPath: kernel, InitrdPath: initrd,
		VCPUs: 1, MemoryMiB: 256,
		SharedDir: shared, SharedFS: sharedFS,
		// The busybox guests speak the serial port's handshake.
		Transport: contract.TransportSerial,
	}
}

func startVM(t *testing.T, cfg hypervisor.Config) hypervisor.VM {
	t.Helper()
	vm, err := New(Options{}).Create(context.Background(), cfg)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background()) })
	return vm
}

// dialAgent retries DialAgent until the guest has opened its port.
func dialAgent(t *testing.T, vm hypervisor.VM, within time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := vm.DialAgent(context.Background())
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent channel not ready after %v: %v; console: %s", within, err,
				tailFile(vm.Info().ConsolePath))
		}
		select {
		case <-vm.Done():
			t.Fatalf("VM died while dialing: %v", vm.ExitError())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func tailFile(path string) string { return vmtest.Tail(path, 2000) }

// readUntil reads lines until one equals last, returning all of them.
func readUntil(t *testing.T, r *bufio.Reader, c net.Conn, last string, within time.Duration) []string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading agent channel (got %q): %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if l == last {
			return lines
		}
	}
}

func TestQEMUBootIntegration(t *testing.T) {
	needRootAndQEMU(t)
	kernel := testKernel(t)
	for _, fs := range []string{contract.SharedFSVirtiofs, contract.SharedFS9p} {
		t.Run(fs, func(t *testing.T) { testBoot(t, kernel, fs) })
	}
}

func testBoot(t *testing.T, kernel, sharedFS string) {
	cfg := testConfig(t, kernel, buildInitramfs(t, sharedFS), sharedFS)
	must(t, os.WriteFile(filepath.Join(cfg.SharedDir, "early.txt"), []byte("early-content\n"), 0o644))
	// The directory to bind-mount into the share once the VM runs.
	late := t.TempDir()
	must(t, os.WriteFile(filepath.Join(late, "inside.txt"), []byte("late-content\n"), 0o644))

	start := time.Now()
	vm := startVM(t, cfg)
	startReturned := time.Since(start)

	// Bind mount after virtiofsd started: the guest must see it.
	target := filepath.Join(cfg.SharedDir, "late")
	must(t, os.Mkdir(target, 0o755))
	must(t, unix.Mount(late, target, "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })

	info := vm.Info()
	t.Logf("Start returned after %v; %s; transport %s (%s)", startReturned.Round(time.Millisecond),
		info.Accelerator+": "+hypervisor.Accelerator(info.AccelReason), info.Transport, info.TransportReason)
	if info.Driver != "qemu" || info.ConsolePath != filepath.Join(cfg.StateDir, consoleLogName) || info.StartedAt.IsZero() {
		t.Errorf("Info = %+v", info)
	}
	if pids := vm.Pids(); (sharedFS == contract.SharedFSVirtiofs && len(pids) != 2) || (sharedFS == contract.SharedFS9p && len(pids) != 1) {
		t.Errorf("Pids = %v", pids)
	}

	// The guest is still booting: a serial dial must fail fast, not hang.
	if c, err := vm.DialAgent(context.Background()); err == nil || !strings.Contains(err.Error(), "has not opened port") {
		t.Errorf("early DialAgent: conn %v, err %v", c, err)
	}
	c := dialAgent(t, vm, 60*time.Second)
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.Peek(1); err != nil {
		t.Fatalf("first byte: %v", err)
	}
	t.Logf("Start to first byte on the agent channel: %v", time.Since(start).Round(time.Millisecond))
	readUntil(t, r, c, "hello-from-guest", 30*time.Second)

	if _, err := vm.DialAgent(context.Background()); err == nil {
		t.Error("second concurrent serial DialAgent succeeded")
	}

	_, err := c.Write([]byte("list\n"))
	must(t, err)
	lines := readUntil(t, r, c, "LISTING-END", 30*time.Second)
	listing := strings.Join(lines, "\n")
	for _, want := range []string{"early.txt", "late", "inside.txt", "early-content", "late-content"} {
		if !strings.Contains(listing, want) {
			t.Errorf("guest listing lacks %q:\n%s", want, listing)
		}
	}
	// The same listing on the console log.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tailFile(info.ConsolePath), "late-content") {
		if time.Now().After(deadline) {
			t.Errorf("console log lacks the listing:\n%s", tailFile(info.ConsolePath))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The guest read the secret through fw_cfg and the host proved it.
	console := vmtest.Tail(info.ConsolePath, 1<<20)
	for _, want := range []string{"agent secret: 64 hex digits read through fw_cfg", "host authenticated"} {
		if !strings.Contains(console, want) {
			t.Errorf("console log lacks %q:\n%s", want, tailFile(info.ConsolePath))
		}
	}

	// The channel can be dialled again once the first connection is closed.
	_, err = c.Write([]byte("bye\n"))
	must(t, err)
	c.Close()
	c2 := dialAgent(t, vm, 5*time.Second)

	st, err := vm.(*VM).QueryStatus(context.Background())
	if err != nil || st != "running" {
		t.Errorf("QueryStatus = %q, %v", st, err)
	}
	// What the shim logs when the agent stops answering.
	diag := vm.(hypervisor.Diagnoser).Diagnose(context.Background())
	c2.Close()
	if vm.Info().Transport == contract.TransportSerial && !strings.Contains(diag, "agent connections: 2 sessions begun, 0 handshakes failed") {
		t.Errorf("Diagnose does not count the two agent sessions of this test:\n%s", diag)
	}
	if vm.Info().Transport == contract.TransportSerial && !strings.Contains(diag, "bytes sent to the agent that QEMU has not read: 0 (err <nil>)") {
		t.Errorf("Diagnose does not show the agent socket's unread bytes:\n%s", diag)
	}
	// 0x0FFFFFFF (0xffffffff over the divisor of 16) is what the kernel
	// loads to measure the timer: left there, the measurement failed and
	// the guest has no timer interrupt.
	if strings.Contains(diag, "initial_count = 268435455") {
		t.Errorf("the guest's local APIC timer is still in its calibration state: the kernel disabled it (lapic_timer_khz not applied?):\n%s", diag)
	}
	for _, want := range []string{"run state: running", "RIP=", "HLT=", "local APIC LVTT", "local APIC Timer"} {
		if !strings.Contains(diag, want) {
			t.Errorf("Diagnose lacks %q:\n%s", want, diag)
		}
	}
	if vm.Info().Transport == contract.TransportSerial && !regexp.MustCompile(`queue 4 \(host to guest\): QEMU last_avail_idx \d+ used_idx \d+ inuse 0 .*; guest ring avail.idx \d+ used.idx \d+ used_event \d+`).MatchString(diag) {
		t.Errorf("Diagnose does not show the agent port's receive queue:\n%s", diag)
	}
	if vm.Info().Transport == contract.TransportSerial && !strings.Contains(diag, "guest has the agent port open: true") {
		t.Errorf("Diagnose does not show the open agent port:\n%s", diag)
	}

	pids := vm.Pids()
	stopStart := time.Now()
	must(t, vm.Stop(context.Background()))
	t.Logf("Stop took %v", time.Since(stopStart).Round(time.Millisecond))
	assertGone(t, vm, cfg, pids)
	if vm.ExitError() != nil {
		t.Errorf("ExitError after Stop = %v", vm.ExitError())
	}
	must(t, vm.Stop(context.Background())) // idempotent
}

// assertGone checks that no process of the VM exists and no socket is left.
func assertGone(t *testing.T, vm hypervisor.VM, cfg hypervisor.Config, pids []int) {
	t.Helper()
	select {
	case <-vm.Done():
	default:
		t.Error("Done not closed")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists (kill 0: %v)", pid, err)
		}
	}
	if p := vm.Pids(); len(p) != 0 {
		t.Errorf("Pids after stop = %v", p)
	}
	ents, _ := os.ReadDir(cfg.StateDir)
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 || strings.HasSuffix(e.Name(), ".sock") || strings.HasSuffix(e.Name(), ".pid") {
			t.Errorf("left behind in state dir: %s", e.Name())
		}
	}
}

// waitDone waits for Done and returns ExitError.
func waitDone(t *testing.T, vm hypervisor.VM, within time.Duration) error {
	t.Helper()
	select {
	case <-vm.Done():
		return vm.ExitError()
	case <-time.After(within):
		t.Fatalf("Done not closed within %v", within)
		return nil
	}
}

func TestQEMUKillIntegration(t *testing.T) {
	needRootAndQEMU(t)
	kernel := testKernel(t)
	cfg := testConfig(t, kernel, buildInitramfs(t, contract.SharedFSVirtiofs), contract.SharedFSVirtiofs)
	vm := startVM(t, cfg)
	pids := vm.Pids()
	if len(pids) != 2 {
		t.Fatalf("Pids = %v", pids)
	}
	killed := time.Now()
	must(t, syscall.Kill(pids[0], syscall.SIGKILL))
	err := waitDone(t, vm, 5*time.Second)
	t.Logf("Done %v after kill -9 of qemu: %v", time.Since(killed).Round(time.Microsecond), err)
	want := "qemu for sandbox " + cfg.ID + " exited unexpectedly: signal: killed"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ExitError = %v, want it to contain %q", err, want)
	}
	waitPidsGone(t, pids)
	must(t, vm.Stop(context.Background()))
	assertGone(t, vm, cfg, pids)
	if vm.ExitError() == nil {
		t.Error("Stop after death cleared ExitError")
	}
}

func TestVirtiofsdKillIntegration(t *testing.T) {
	needRootAndQEMU(t)
	kernel := testKernel(t)
	cfg := testConfig(t, kernel, buildInitramfs(t, contract.SharedFSVirtiofs), contract.SharedFSVirtiofs)
	vm := startVM(t, cfg)
	pids := vm.Pids()
	killed := time.Now()
	must(t, syscall.Kill(pids[1], syscall.SIGKILL))
	err := waitDone(t, vm, 5*time.Second)
	t.Logf("Done %v after kill -9 of virtiofsd: %v", time.Since(killed).Round(time.Microsecond), err)
	want := "virtiofsd for sandbox " + cfg.ID + " exited unexpectedly: signal: killed"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ExitError = %v, want it to contain %q", err, want)
	}
	// QEMU is useless without its share: the driver kills it.
	waitPidsGone(t, pids)
	must(t, vm.Stop(context.Background()))
	assertGone(t, vm, cfg, pids)
}

func waitPidsGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A kernel QEMU cannot load: Start fails with QEMU's own words and leaves
// nothing behind. Needs no guest kernel.
func TestQEMUStartFailureIntegration(t *testing.T) {
	needRootAndQEMU(t)
	dir := t.TempDir()
	bogus := filepath.Join(dir, "vmlinux")
	must(t, os.WriteFile(bogus, []byte("not a kernel"), 0o644))
	cfg := testConfig(t, bogus, bogus, contract.SharedFSVirtiofs)
	vm, err := New(Options{}).Create(context.Background(), cfg)
	must(t, err)
	err = vm.Start(context.Background())
	if err == nil {
		vm.Stop(context.Background())
		t.Fatal("Start with a bogus kernel succeeded")
	}
	t.Logf("Start error: %v", err)
	if !strings.Contains(err.Error(), "qemu for sandbox "+cfg.ID+" exited unexpectedly") || !strings.Contains(err.Error(), "qemu.log") {
		t.Errorf("error lacks QEMU's exit and log: %v", err)
	}
	assertGone(t, vm, cfg, nil)
	must(t, vm.Stop(context.Background()))
}

// Cancelling Start's ctx stops what it launched.
func TestQEMUStartCancelIntegration(t *testing.T) {
	needRootAndQEMU(t)
	kernel := testKernel(t)
	cfg := testConfig(t, kernel, buildInitramfs(t, contract.SharedFSVirtiofs), contract.SharedFSVirtiofs)
	vm, err := New(Options{}).Create(context.Background(), cfg)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	err = vm.Start(ctx)
	if err == nil {
		t.Skip("Start finished within 2ms; nothing to cancel")
	}
	t.Logf("Start error: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not wrap the ctx error: %v", err)
	}
	assertGone(t, vm, cfg, nil)
	out, _ := exec.Command("pgrep", "-f", cfg.StateDir).Output()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("processes left: %s", out)
	}
}

// TestQEMUAgentLatencyIntegration boots a few VMs one after another and
// reports the median time from Start to the first byte on the agent channel.
func TestQEMUAgentLatencyIntegration(t *testing.T) {
	needRootAndQEMU(t)
	if testing.Short() {
		t.Skip("-short")
	}
	kernel := testKernel(t)
	initrd := buildInitramfs(t, contract.SharedFSVirtiofs)
	var times []time.Duration
	for i := 0; i < 5; i++ {
		cfg := testConfig(t, kernel, initrd, contract.SharedFSVirtiofs)
		start := time.Now()
		vm := startVM(t, cfg)
		c := dialAgent(t, vm, 60*time.Second)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		times = append(times, time.Since(start))
		c.Close()
		must(t, vm.Stop(context.Background()))
	}
	slices.Sort(times)
	t.Logf("Start to first agent byte, %d runs: median %v, min %v, max %v", len(times),
		times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
}

// TestShimDeathKillsVMIntegration: when the process owning the VM (the shim)
// is killed with SIGKILL, QEMU and virtiofsd die with it (Pdeathsig) instead
// of running on unowned. The owner is this test binary re-executed.
func TestShimDeathKillsVMIntegration(t *testing.T) {
	if os.Getenv("PODVM_TEST_OWNER") != "" {
		runOwner(t)
		return
	}
	needRootAndQEMU(t)
	testShimDeath(t, "", 2)
}

// With hybrid vsock, vhost-device-vsock (another uid) dies with the shim
// too.
func TestShimDeathKillsHybridVsockIntegration(t *testing.T) {
	needRootAndQEMU(t)
	testShimDeath(t, vsockdForTest(t), 3)
}

// testShimDeath starts an owner (with vhost-device-vsock vsockd, if set),
// kills it and waits for its wantPids processes to go.
func testShimDeath(t *testing.T, vsockd string, wantPids int) {
	kernel := testKernel(t)
	cfg := testConfig(t, kernel, buildInitramfs(t, contract.SharedFSVirtiofs), contract.SharedFSVirtiofs)
	cmd := exec.Command(os.Args[0], "-test.run=^TestShimDeathKillsVMIntegration$", "-test.v")
	cmd.Env = append(os.Environ(), "PODVM_TEST_OWNER=1", "OWNER_KERNEL="+kernel, "OWNER_INITRD="+cfg.InitrdPath,
		"OWNER_STATE="+cfg.StateDir, "OWNER_SHARED="+cfg.SharedDir, "OWNER_ID="+cfg.ID, "OWNER_VSOCKD="+vsockd)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "OWNER-PIDS "); ok {
			for _, p := range strings.Fields(f) {
				var pid int
				fmt.Sscan(p, &pid)
				pids = append(pids, pid)
			}
			break
		}
	}
	if len(pids) != wantPids {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("owner did not report %d pids: %v", wantPids, pids)
	}
	t.Cleanup(func() { // should the test fail: no strays
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	must(t, cmd.Process.Kill())
	cmd.Wait()
	waitPidsGone(t, pids)
}

// runOwner starts a VM and waits to be killed.
func runOwner(t *testing.T) {
	cfg := hypervisor.Config{ID: os.Getenv("OWNER_ID"), StateDir: os.Getenv("OWNER_STATE"),
		KernelPath: os.Getenv("OWNER_KERNEL"), InitrdPath: os.Getenv("OWNER_INITRD"),
		VCPUs: 1, MemoryMiB: 128, SharedDir: os.Getenv("OWNER_SHARED"), Transport: contract.TransportSerial}
	vsockd := os.Getenv("OWNER_VSOCKD")
	if vsockd != "" {
		cfg.Transport = ""
	}
	vm, err := New(Options{VhostDeviceVsockPath: vsockd}).Create(context.Background(), cfg)
	must(t, err)
	must(t, vm.Start(context.Background()))
	fmt.Printf("OWNER-PIDS %s\n", strings.Trim(fmt.Sprint(vm.Pids()), "[]"))
	<-vm.Done()
	t.Fatalf("VM died while its owner lived: %v", vm.ExitError())
}

// A guest whose init exits panics; panic=-1 and -no-reboot turn that into
// QEMU exiting, which must close Done with the panic from the console.
func TestGuestPanicIntegration(t *testing.T) {
	needRootAndQEMU(t)
	kernel := testKernel(t)
	cfg := testConfig(t, kernel, buildInitramfsWith(t, "#!/bin/sh\necho init-giving-up\nexit 3\n"), contract.SharedFS9p)
	vm := startVM(t, cfg)
	err := waitDone(t, vm, 60*time.Second)
	t.Logf("ExitError: %v", err)
	for _, want := range []string{"exited unexpectedly: exit status 0", "the guest shut down, rebooted or panicked",
		"last lines of console.log", "Attempted to kill init"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ExitError lacks %q", want)
		}
	}
	must(t, vm.Stop(context.Background()))
	assertGone(t, vm, cfg, nil)
}
