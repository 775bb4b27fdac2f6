package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeExecRuntime is an OCI runtime whose exec of a process named "hang"
// does not return until the file release exists, and whose every other
// exec and kill return at once (the pid file names the script's shell).
const fakeExecRuntime = `#!/bin/sh
pidfile= process=
while [ $# -gt 0 ]; do
	case $1 in
	--pid-file) pidfile=$2; shift ;;
	--process) process=$2; shift ;;
	esac
	shift
done
if [ -n "$process" ] && grep -q '"hang"' "$process"; then
	while [ ! -e "$(dirname "$0")/release" ]; do sleep 0.02; done
fi
[ -n "$pidfile" ] && printf %s $$ > "$pidfile"
exit 0
`

// TestExecsDoNotWaitForEachOther: an exec whose runtime call hangs holds up
// neither another exec of the same container nor a signal to its init, and
// its id stays taken while it starts.
func TestExecsDoNotWaitForEachOther(t *testing.T) {
	dir := t.TempDir()
	rt := filepath.Join(dir, "runc")
	if err := os.WriteFile(rt, []byte(fakeExecRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	release := func() {
		if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(release) // never leave the runtime waiting
	exits := make(chan runc.Exit)
	defer close(exits)
	m := NewManager(Config{Runc: rt, StateDir: dir, BundleDir: dir}, exits)
	c := newContainer(m, "c1", t.TempDir(), ociRuntime{name: "runc", binary: rt})
	c.init = newProcess(c, "", os.Getpid(), nil)
	c.started = true

	hung := make(chan error, 1)
	go func() { hung <- c.Exec(context.Background(), execRequest(t, "slow", "hang")) }()
	waitStarting(t, c, "slow")

	done := make(chan error, 1)
	go func() { done <- c.Exec(context.Background(), execRequest(t, "quick", "true")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exec beside a hanging one: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an exec waited for another exec of the same container")
	}
	if err := c.Exec(context.Background(), execRequest(t, "slow", "true")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("exec with the id of one still starting: %v, want AlreadyExists", err)
	}
	if err := c.init.Signal(context.Background(), syscall.Signal(0), false); err != nil {
		t.Errorf("signal beside a hanging exec: %v", err)
	}

	release()
	if err := <-hung; err != nil {
		t.Fatalf("the hanging exec, released: %v", err)
	}
	for _, id := range []string{"slow", "quick"} {
		if _, err := c.Process(id); err != nil {
			t.Errorf("exec %s: %v", id, err)
		}
	}
}

func execRequest(t *testing.T, id string, args ...string) ExecRequest {
	t.Helper()
	b, err := json.Marshal(specs.Process{Args: args, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	return ExecRequest{ID: id, Process: b}
}

// waitStarting waits until exec id has claimed its id.
func waitStarting(t *testing.T, c *Container, id string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c.execMu.Lock()
		_, ok := c.starting[id]
		c.execMu.Unlock()
		if ok {
			return
		}
	}
	t.Fatalf("exec %s never started", id)
}
