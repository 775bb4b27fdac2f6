package cloudhypervisor

// End-to-end tests with the real binary. They run where cloud-hypervisor is
// on PATH and hardware KVM is usable, and skip with that reason elsewhere:
// on this project's development machines no Cloud Hypervisor binary can be
// installed (not in Debian bookworm, not a Go module, no other download)
// and /dev/kvm is kvm_pvm, so they always skip there, even under
// PODVM_REQUIRE_INTEGRATION=1. Where they run, they also need root
// (virtiofsd), busybox-static (to pack the initramfs) and a guest kernel
// (vmtest.Kernel); those are handled by vmtest.Missing like the qemu
// driver's integration tests.

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/accel"
	"github.com/podvm/podvm/runtime/internal/vmtest"
)

// needCloudHypervisor skips unless the real binary and hardware KVM are
// there, then applies the usual prerequisites.
func needCloudHypervisor(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(binaryName); err != nil {
		t.Skipf("%s not on PATH: no Cloud Hypervisor binary can be installed on this machine (not packaged in Debian bookworm, not a Go module); "+
			"the driver is tested here against the v%d.%d API schema with a fake VMM", binaryName, testedVersion[0], testedVersion[1])
	}
	if ok, why := accel.KVMUsable(accel.Probe()); !ok {
		t.Skipf("hardware KVM is not usable (%s): Cloud Hypervisor has no software emulation", why)
	}
	if os.Geteuid() != 0 {
		vmtest.Missing(t, "needs root (virtiofsd)")
	}
}

// goBinary finds the go command that runs these tests.
func goBinary(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no go command to build the guest init: %v", err)
	}
	return p
}

// buildGuestInit compiles testdata/guestinit as a static binary.
func buildGuestInit(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command(goBinary(t), "build", "-o", out, "./testdata/guestinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the guest init: %v\n%s", err, b)
	}
	return out
}

// The end-to-end test's guest program must keep compiling even where the
// test itself cannot run.
func TestGuestInitBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the go build")
	}
	bin := buildGuestInit(t)
	out, err := exec.Command("file", bin).Output()
	if err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("guest init is not static: %s", out)
	}
}

// e2eConfig is a VM with the guest init and a share holding hello.txt.
func e2eConfig(t *testing.T) hypervisor.Config {
	t.Helper()
	kernel := vmtest.Kernel(t)
	initBin, err := os.ReadFile(buildGuestInit(t))
	must(t, err)
	initrd := vmtest.BusyboxInitramfs(t, nil, map[string]string{"init": string(initBin)})
	dir, err := os.MkdirTemp("/tmp", "pvche")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	shared := filepath.Join(dir, "shared")
	must(t, os.Mkdir(shared, 0o755))
	must(t, os.WriteFile(filepath.Join(shared, "hello.txt"), []byte("hello-from-the-host\n"), 0o644))
	return hypervisor.Config{
		ID: "e2e-" + filepath.Base(dir), StateDir: filepath.Join(dir, "state"),
		KernelPath: kernel, InitrdPath: initrd, VCPUs: 1, MemoryMiB: 256, SharedDir: shared,
	}
}

func startE2E(t *testing.T, cfg hypervisor.Config) *VM {
	t.Helper()
	vm, err := New(Options{}).Create(context.Background(), cfg)
	must(t, err)
	t.Cleanup(func() { vm.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return vm.(*VM)
}

// dialGuest retries DialAgent until the guest listens, as agentclient does.
func dialGuest(t *testing.T, v *VM, within time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := v.DialAgent(context.Background())
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest not reachable after %v: %v; console: %s", within, err, vmtest.Tail(v.Info().ConsolePath, 2000))
		}
		select {
		case <-v.Done():
			t.Fatalf("VM died while dialing: %v", v.ExitError())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestCloudHypervisorBootIntegration(t *testing.T) {
	needCloudHypervisor(t)
	cfg := e2eConfig(t)
	start := time.Now()
	v := startE2E(t, cfg)
	t.Logf("Start returned after %v; %+v", time.Since(start).Round(time.Millisecond), v.Info())
	pids := v.Pids()
	if len(pids) != 2 {
		t.Errorf("Pids = %v", pids)
	}
	st, err := v.State(context.Background())
	if err != nil || st != "Running" {
		t.Errorf("State = %q, %v", st, err)
	}

	c := dialGuest(t, v, 60*time.Second)
	t.Logf("Start to agent channel: %v", time.Since(start).Round(time.Millisecond))
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if l, err := r.ReadString('\n'); err != nil || l != "guestinit ready hello-from-the-host\n" {
		t.Errorf("greeting %q, %v (the share is read over virtio-fs)", l, err)
	}
	c.Write([]byte("ping\n"))
	if l, _ := r.ReadString('\n'); l != "echo ping\n" {
		t.Errorf("echo %q", l)
	}
	// Several streams at once: hybrid vsock multiplexes.
	c2 := dialGuest(t, v, 5*time.Second)
	c2.Close()
	c.Close()

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(vmtest.Tail(v.Info().ConsolePath, 4000), "guestinit: listening on vsock port 1024") {
		if time.Now().After(deadline) {
			t.Errorf("console log lacks the guest's output:\n%s", vmtest.Tail(v.Info().ConsolePath, 4000))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	must(t, v.Stop(context.Background()))
	assertTornDown(t, v, pids)
	if v.ExitError() != nil {
		t.Errorf("ExitError after Stop = %v", v.ExitError())
	}
}

// A guest whose init exits panics; with panic=-1 Cloud Hypervisor resets
// it, and the driver reports the VM dead instead of letting a fresh guest
// run without the pod's containers.
func TestCloudHypervisorGuestPanicIntegration(t *testing.T) {
	needCloudHypervisor(t)
	v := startE2E(t, e2eConfig(t))
	pids := v.Pids()
	c := dialGuest(t, v, 60*time.Second)
	c.Write([]byte("panic\n"))
	c.Close()
	select {
	case <-v.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("Done not closed after the guest panicked")
	}
	err := v.ExitError()
	t.Logf("ExitError: %v", err)
	if err == nil || !strings.Contains(err.Error(), "the guest rebooted or panicked") || !strings.Contains(err.Error(), "Attempted to kill init") {
		t.Errorf("ExitError = %v", err)
	}
	assertProcessesGone(t, pids)
	must(t, v.Stop(context.Background()))
}

func TestCloudHypervisorKillIntegration(t *testing.T) {
	needCloudHypervisor(t)
	v := startE2E(t, e2eConfig(t))
	pids := v.Pids()
	must(t, syscall.Kill(pids[0], syscall.SIGKILL))
	select {
	case <-v.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after kill -9")
	}
	if err := v.ExitError(); err == nil || !strings.Contains(err.Error(), "exited unexpectedly: signal: killed") {
		t.Errorf("ExitError = %v", err)
	}
	assertProcessesGone(t, pids)
	must(t, v.Stop(context.Background()))
	assertTornDown(t, v, pids)
}
