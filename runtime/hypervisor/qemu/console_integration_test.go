package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
)

// floodInit is a hostile guest's /init: a background loop writes to the
// console (the serial port) without end while the foreground answers the
// host's agent handshake (and its secret) and then echoes every line it is sent.
const floodInit = guestPreamble + `line=FLOOD-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-0123456789
while true; do echo $line; echo $line; echo $line; echo $line; done &
exec 3<>$port
printf 'podvm-agent ready\n' >&3
read -r hello <&3
printf 'podvm-ok %s\n' "${hello#podvm-hello }" >&3
auth
while read -r l <&3; do echo "echo $l" >&3; done
`

// TestConsoleFloodIntegration: a guest that writes to its console without
// end fills neither the state dir nor the shim: the console files stay
// under the cap, the guest keeps answering, the VM keeps running, and the
// shim-side reader's CPU stays small.
func TestConsoleFloodIntegration(t *testing.T) {
	needRootAndQEMU(t)
	const limit = 64 << 10
	const flood = 10 * time.Second
	cfg := testConfig(t, testKernel(t), buildInitramfsWith(t, floodInit), contract.SharedFS9p)
	cfg.Transport = contract.TransportSerial
	vm, err := New(Options{ConsoleMaxBytes: limit}).Create(context.Background(), cfg)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, vm.Start(ctx))
	t.Cleanup(func() { vm.Stop(context.Background()) })
	c := dialAgent(t, vm, 60*time.Second)
	defer c.Close()
	r := bufio.NewReader(c)

	cpu0, wall0 := selfCPU(t), time.Now()
	var maxSize int64
	for i := 0; time.Since(wall0) < flood; i++ {
		want := fmt.Sprintf("echo ping-%d", i)
		fmt.Fprintf(c, "ping-%d\n", i)
		if got := readUntil(t, r, c, want, 10*time.Second); len(got) != 1 {
			t.Errorf("guest echoed %q, want just %q", got, want)
		}
		maxSize = max(maxSize, fileSize(cfg.StateDir+"/console.log"), fileSize(cfg.StateDir+"/console.log.1"))
		if maxSize > limit {
			t.Fatalf("a console file is %d bytes after %v, over the cap %d", maxSize, time.Since(wall0).Round(time.Millisecond), limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cpu, wall := selfCPU(t)-cpu0, time.Since(wall0)
	select {
	case <-vm.Done():
		t.Fatalf("VM died under the flood: %v", vm.ExitError())
	default:
	}
	old := fileSize(cfg.StateDir + "/console.log.1")
	if old <= 0 {
		t.Errorf("no console.log.1 after %v: the guest did not write more than the cap, so the test proves nothing", flood)
	}
	tail := tailFile(cfg.StateDir + "/console.log")
	if !strings.Contains(tail, "FLOOD-0123456789") {
		t.Errorf("console.log lacks the guest's latest output:\n%s", tail)
	}
	// The guest's UART is slow to emulate; what the shim spends moving it
	// must be a small part of one core.
	share := float64(cpu) / float64(wall)
	t.Logf("flood %v: largest console file %d bytes (cap %d); this process (the shim side) used %v CPU, %.1f%% of one core",
		wall.Round(time.Millisecond), maxSize, limit, cpu.Round(time.Millisecond), 100*share)
	if share > 0.10 {
		t.Errorf("the shim side used %.1f%% of a core under the flood, want at most 10%%", 100*share)
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	must(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
