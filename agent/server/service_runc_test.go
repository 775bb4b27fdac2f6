package server

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
)

// run creates a container and, if start, starts it.
func (a *agent) run(t *testing.T, req *api.CreateContainerRequest, start bool) {
	t.Helper()
	resp, err := a.CreateContainer(ctxTimeout(t), req)
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", req.ContainerId, err)
	}
	if resp.Pid == 0 {
		t.Fatalf("CreateContainer %s returned pid 0", req.ContainerId)
	}
	if !start {
		return
	}
	if _, err := a.StartContainer(ctxTimeout(t), &api.StartContainerRequest{ContainerId: req.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", req.ContainerId, err)
	}
}

func (a *agent) wait(t *testing.T, id string) uint32 {
	t.Helper()
	resp, err := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("WaitProcess %s: %v", id, err)
	}
	if resp.ExitedAtNs == 0 {
		t.Errorf("WaitProcess %s: no exit time", id)
	}
	return resp.ExitStatus
}

func (a *agent) remove(t *testing.T, id string) {
	t.Helper()
	if _, err := a.RemoveContainer(ctxTimeout(t), &api.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer %s: %v", id, err)
	}
}

// TestServiceRunc_StdoutStderrExitCode runs a container that writes to both
// streams and exits 7, and checks the streams stay apart.
func TestServiceRunc_StdoutStderrExitCode(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "streams"
	a.run(t, &api.CreateContainerRequest{
		ContainerId: id,
		OciSpec:     testSpec(t, busyboxRootfs(t), "sh", "-c", "echo to-stdout; echo to-stderr >&2; echo more-stdout; exit 7"),
		Stdout:      true,
		Stderr:      true,
	}, true)

	var stdout, stderr string
	var wg sync.WaitGroup
	wg.Go(func() { stdout = a.readAll(t, id, false) })
	wg.Go(func() { stderr = a.readAll(t, id, true) })
	wg.Wait()
	if stdout != "to-stdout\nmore-stdout\n" {
		t.Errorf("stdout = %q", stdout)
	}
	if stderr != "to-stderr\n" {
		t.Errorf("stderr = %q", stderr)
	}
	if got := a.wait(t, id); got != 7 {
		t.Errorf("exit status = %d, want 7", got)
	}
	a.remove(t, id)
}

// TestServiceRunc_StdinEcho echoes stdin back through cat.
func TestServiceRunc_StdinEcho(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "echo"
	a.run(t, &api.CreateContainerRequest{
		ContainerId: id,
		OciSpec:     testSpec(t, busyboxRootfs(t), "cat"),
		Stdin:       true,
		Stdout:      true,
	}, true)

	for _, line := range []string{"hello\n", "podvm\n"} {
		resp, err := a.WriteStdin(ctxTimeout(t), &api.WriteStreamRequest{ContainerId: id, Data: []byte(line)})
		if err != nil || resp.Len != uint32(len(line)) {
			t.Fatalf("WriteStdin %q: %d, %v", line, resp.GetLen(), err)
		}
		var got string
		for len(got) < len(line) {
			r, err := a.ReadStdout(ctxTimeout(t), &api.ReadStreamRequest{ContainerId: id, Len: 64})
			if err != nil || r.Eof {
				t.Fatalf("ReadStdout: eof %v, %v", r.GetEof(), err)
			}
			got += string(r.Data)
		}
		if got != line {
			t.Fatalf("echoed %q, want %q", got, line)
		}
	}
	if _, err := a.CloseStdin(ctxTimeout(t), &api.CloseStdinRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if rest := a.readAll(t, id, false); rest != "" {
		t.Errorf("after CloseStdin stdout had %q", rest)
	}
	if got := a.wait(t, id); got != 0 {
		t.Errorf("cat exited %d, want 0", got)
	}
	_, err := a.WriteStdin(ctxTimeout(t), &api.WriteStreamRequest{ContainerId: id, Data: []byte("late")})
	wantCode(t, err, codes.FailedPrecondition, id)
	a.remove(t, id)
}

// TestServiceRunc_SignalKill ends `sleep 100` with SIGKILL, with waiters
// that called WaitProcess before the exit and one after.
func TestServiceRunc_SignalKill(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "sleeper"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, busyboxRootfs(t), "sleep", "100")}, true)

	before := make(chan uint32, 3)
	for range cap(before) {
		go func() {
			resp, err := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: id})
			if err != nil {
				t.Errorf("early WaitProcess: %v", err)
				before <- 0
				return
			}
			before <- resp.ExitStatus
		}()
	}
	// The waiters must be blocked, not answered, while sleep runs.
	select {
	case s := <-before:
		t.Fatalf("WaitProcess returned %d while the container runs", s)
	case <-time.After(300 * time.Millisecond):
	}

	_, err := a.RemoveContainer(ctxTimeout(t), &api.RemoveContainerRequest{ContainerId: id})
	wantCode(t, err, codes.FailedPrecondition, id)

	if _, err := a.SignalProcess(ctxTimeout(t), &api.SignalProcessRequest{ContainerId: id, Signal: 9}); err != nil {
		t.Fatalf("SignalProcess: %v", err)
	}
	for range cap(before) {
		if s := <-before; s != 137 {
			t.Errorf("early waiter got %d, want 137", s)
		}
	}
	if s := a.wait(t, id); s != 137 {
		t.Errorf("late waiter got %d, want 137", s)
	}
	_, err = a.SignalProcess(ctxTimeout(t), &api.SignalProcessRequest{ContainerId: id, Signal: 9})
	wantCode(t, err, codes.NotFound, id)
	a.remove(t, id)
}

// TestServiceRunc_SignalAll signals every process of the container.
func TestServiceRunc_SignalAll(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "family"
	a.run(t, &api.CreateContainerRequest{
		ContainerId: id,
		// The shell is the init of its pid namespace and has no TERM
		// handler, so TERM from outside does not reach it; only --all
		// reaches the sleep, and the shell's wait then returns 128+15.
		OciSpec: testSpec(t, busyboxRootfs(t), "sh", "-c", "sleep 100 & echo started; wait $!"),
		Stdout:  true,
	}, true)
	r, err := a.ReadStdout(ctxTimeout(t), &api.ReadStreamRequest{ContainerId: id, Len: 64})
	if err != nil || string(r.Data) != "started\n" {
		t.Fatalf("ReadStdout = %q, %v", r.GetData(), err)
	}
	if _, err := a.SignalProcess(ctxTimeout(t), &api.SignalProcessRequest{ContainerId: id, Signal: 15, All: true}); err != nil {
		t.Fatalf("SignalProcess --all: %v", err)
	}
	if s := a.wait(t, id); s != 128+15 {
		t.Errorf("exit status = %d, want %d", s, 128+15)
	}
	a.remove(t, id)
}

// TestServiceRunc_RemoveLeavesNoState checks that nothing of a removed
// container stays: runc state, bundle, or the agent's record of it.
func TestServiceRunc_RemoveLeavesNoState(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	rootfs := busyboxRootfs(t)
	tests := []struct {
		id    string
		start bool
	}{
		{"stopped", true},
		{"never-started", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			a.run(t, &api.CreateContainerRequest{ContainerId: tt.id, OciSpec: testSpec(t, rootfs, "true")}, tt.start)
			if tt.start && a.wait(t, tt.id) != 0 {
				t.Fatal("true failed")
			}
			state := filepath.Join(a.cfg.StateDir, tt.id)
			bundle := filepath.Join(a.cfg.BundleDir, tt.id)
			for _, p := range []string{state, bundle} {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("before remove: %v", err)
				}
			}
			a.remove(t, tt.id)
			for _, p := range []string{state, bundle} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s survived RemoveContainer (%v)", p, err)
				}
			}
			_, err := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: tt.id})
			wantCode(t, err, codes.NotFound, tt.id)
			_, err = a.RemoveContainer(ctxTimeout(t), &api.RemoveContainerRequest{ContainerId: tt.id})
			wantCode(t, err, codes.NotFound, tt.id)
		})
	}
}

// TestServiceRunc_Lifecycle covers the refusals of the state table.
func TestServiceRunc_Lifecycle(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	rootfs := busyboxRootfs(t)
	const id = "lifecycle"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, rootfs, "true")}, false)

	_, err := a.CreateContainer(ctxTimeout(t), &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, rootfs, "true")})
	wantCode(t, err, codes.AlreadyExists, id)

	_, err = a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: id, ExecId: "exec-1"})
	wantCode(t, err, codes.NotFound, "exec-1")

	if _, err := a.StartContainer(ctxTimeout(t), &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = a.StartContainer(ctxTimeout(t), &api.StartContainerRequest{ContainerId: id})
	wantCode(t, err, codes.FailedPrecondition, id)
	if s := a.wait(t, id); s != 0 {
		t.Fatalf("exit status %d", s)
	}
	a.remove(t, id)
}

// TestServiceRunc_Terminal runs a container on a pty.
func TestServiceRunc_Terminal(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "tty"
	a.run(t, &api.CreateContainerRequest{
		ContainerId: id,
		OciSpec:     testSpec(t, busyboxRootfs(t), "sh", "-c", "tty; exit 3"),
		Stdout:      true,
		Terminal:    true,
	}, true)
	out := a.readAll(t, id, false)
	if !strings.HasPrefix(out, "/dev/pts/") {
		t.Errorf("tty printed %q, want a /dev/pts path", out)
	}
	if s := a.wait(t, id); s != 3 {
		t.Errorf("exit status %d, want 3", s)
	}
	if rest := a.readAll(t, id, true); rest != "" {
		t.Errorf("a terminal's stderr had %q", rest)
	}
	a.remove(t, id)
}

// TestServiceRunc_DestroySandbox kills and removes what is left.
func TestServiceRunc_DestroySandbox(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	rootfs := busyboxRootfs(t)
	a.run(t, &api.CreateContainerRequest{ContainerId: "running", OciSpec: testSpec(t, rootfs, "sleep", "100")}, true)
	a.run(t, &api.CreateContainerRequest{ContainerId: "created", OciSpec: testSpec(t, rootfs, "sleep", "100")}, false)
	// A waiter of an exec still running gets its exit, not a hang.
	if _, err := a.ExecProcess(ctxTimeout(t), &api.ExecProcessRequest{ContainerId: "running", ExecId: "e", Process: execProcess(t, "sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	execWait := make(chan *api.WaitProcessResponse, 1)
	go func() {
		resp, _ := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: "running", ExecId: "e"})
		execWait <- resp
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := a.DestroySandbox(ctxTimeout(t), &api.DestroySandboxRequest{SandboxId: "s"}); err != nil {
		t.Fatal(err)
	}
	if resp := <-execWait; resp.GetExitStatus() != 137 {
		t.Errorf("exec waiter after DestroySandbox got %v, want exit 137", resp)
	}
	entries, _ := os.ReadDir(a.cfg.StateDir)
	if len(entries) != 0 {
		t.Errorf("runc state left after DestroySandbox: %v", entries)
	}
	for _, id := range []string{"running", "created"} {
		_, err := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: id})
		wantCode(t, err, codes.NotFound, id)
	}
}
