package cache

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/vmsecret"
)

// startNamed starts a process whose command line names id, as a cached
// VM's QEMU and virtiofsd name their VM.
func startNamed(t *testing.T, id string) *exec.Cmd {
	t.Helper()
	// /usr/bin's: a python3 found on PATH may be a wrapper script (pyenv's
	// shim) whose command line changes when it execs the interpreter.
	cmd := exec.Command("/usr/bin/python3", "-c", "import time; time.sleep(600)", id)
	if err := cmd.Start(); err != nil {
		t.Skipf("python3: %v", err)
	}
	go cmd.Wait() // this test is the parent, as the daemon is a VM's
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, "the exec of "+id, func() bool { return namesVM(cmd.Process.Pid, id) })
	return cmd
}

func adoptTwo(t *testing.T) (*Claimed, *exec.Cmd, *exec.Cmd) {
	t.Helper()
	id := "0123456789abcdef"
	vmm, helper := startNamed(t, id), startNamed(t, id)
	c, err := Adopt(t.TempDir(), Entry{ID: id, Pids: []int{vmm.Process.Pid, helper.Process.Pid}, MAC: "02:00:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	return c, vmm, helper
}

func TestAdoptedVMStops(t *testing.T) {
	c, _, _ := adoptTwo(t)
	select {
	case <-c.Done():
		t.Fatal("Done before anything ended")
	case <-time.After(50 * time.Millisecond):
	}
	if got := c.Info().NICMACs; len(got) != 1 || got[0] != "02:00:00:00:00:01" {
		t.Errorf("NICMACs %v", got)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done still open after Stop")
	}
	if err := c.ExitError(); err != nil {
		t.Errorf("ExitError after a requested Stop: %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestAdoptedVMEndsWithItsHelper(t *testing.T) {
	c, _, helper := adoptTwo(t)
	helper.Process.Kill()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the helper's end did not end the VM")
	}
	if err := c.ExitError(); err == nil || !strings.Contains(err.Error(), "helper") {
		t.Errorf("ExitError %v, want the helper's end", err)
	}
	if _, err := c.DialAgent(context.Background()); err == nil {
		t.Error("DialAgent to a stopped VM succeeded")
	}
}

func TestAdoptRefusesAProcessNotTheVMs(t *testing.T) {
	other := startNamed(t, "another-vm")
	if _, err := Adopt(t.TempDir(), Entry{ID: "0123456789abcdef", Pids: []int{other.Process.Pid}}); err == nil {
		t.Fatal("adopted a process that does not name the VM")
	}
}

// TestAdoptedVMDialsItsAgent: DialAgent proves the secret in the VM's
// directory to an agent on its socket, one connection at a time.
func TestAdoptedVMDialsItsAgent(t *testing.T) {
	c, _, _ := adoptTwo(t)
	secret, _, err := vmsecret.Create(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	c.e.AgentSocket = "agent.sock"
	l, err := net.Listen("unix", filepath.Join(c.dir, c.e.AgentSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	admitted := make(chan error, 2)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			hello, err := contract.GuestHandshake(conn)
			if err == nil {
				err = contract.GuestAuth(conn, secret, contract.TransportSerial, hello)
			}
			admitted <- err
		}
	}()
	conn, err := c.DialAgent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := <-admitted; err != nil {
		t.Fatalf("the agent did not admit the host: %v", err)
	}
	if _, err := c.DialAgent(context.Background()); err == nil {
		t.Error("a second connection while one is open")
	}
	begin := time.Now() // before the hang-up, which the grace counts from
	conn.Close()
	conn, err = c.DialAgent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if waited := time.Since(begin); waited < hangupGrace {
		t.Errorf("redialed %s after a hang-up, want at least %s", waited, hangupGrace)
	}
	c.Stop(context.Background())
}

// TestAdoptedVMStartedWhenTaken: a claimed VM's start, as the pod's
// phases report it, is its adoption, not its boot in the daemon.
func TestAdoptedVMStartedWhenTaken(t *testing.T) {
	before := time.Now()
	c, _, _ := adoptTwo(t)
	defer c.Stop(context.Background())
	if got := c.Info().StartedAt; got.Before(before) || got.After(time.Now()) {
		t.Errorf("StartedAt %s, want the adoption (after %s)", got, before)
	}
}
