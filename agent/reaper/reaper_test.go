package reaper

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
)

// TestReapsChildAndOrphan starts a shell through go-runc's Monitor that
// leaves an orphan behind: the shell's status must reach the Monitor's
// waiter, and the orphan, reparented to this subreaper, must be reaped and
// reported to subscribers.
func TestReapsChildAndOrphan(t *testing.T) {
	if err := Start(); err != nil {
		t.Fatal(err)
	}
	exits := Subscribe()
	defer Unsubscribe(exits)

	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2 & echo $!; exit 3")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ec, err := runc.Monitor.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var orphan int
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	if _, err := fmt.Sscan(string(buf[:n]), &orphan); err != nil {
		t.Fatalf("orphan pid %q: %v", buf[:n], err)
	}
	status, err := runc.Monitor.Wait(cmd, ec)
	if err != nil || status != 3 {
		t.Fatalf("Monitor.Wait = %d, %v; want 3", status, err)
	}

	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-exits:
			if e.Pid == orphan {
				if e.Status != 0 {
					t.Fatalf("orphan exited %d, want 0", e.Status)
				}
				return
			}
		case <-deadline:
			t.Fatalf("orphan %d was never reaped", orphan)
		}
	}
}
