package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// testMachine is a Machine whose "VMM" is a shell script.
func testMachine(t *testing.T, spec Spec) *Machine {
	t.Helper()
	spec.Driver, spec.ID, spec.StateDir = "fakevmm", "t1", t.TempDir()
	spec.LogName, spec.PidName, spec.ConsoleName = "vmm.log", "vmm.pid", "console.log"
	spec.Sockets = []string{"api.sock"}
	m := New(spec)
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m
}

func (m *Machine) startScript(script string, guestGone <-chan string) (*childproc.Process, error) {
	return m.StartVMM(childproc.Spec{Name: "fakevmm for sandbox t1", Path: "/bin/sh", Args: []string{"-c", script},
		LogPath: m.Path(m.spec.LogName)}, guestGone)
}

func waitDone(t *testing.T, m *Machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done was not closed")
	}
}

func TestStartAndStop(t *testing.T) {
	var shutdown, released bool
	m := testMachine(t, Spec{
		Shutdown: func(ctx context.Context, p *childproc.Process) { shutdown = true },
		Release:  func() { released = true },
	})
	os.WriteFile(m.Path("api.sock"), nil, 0o600) // left by a crashed shim
	err := m.Start(context.Background(), 5*time.Second, func(ctx context.Context) error {
		if err := m.PrepareDir(); err != nil {
			return err
		}
		if _, err := os.Stat(m.Path("api.sock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a stale socket survived PrepareDir: %v", err)
		}
		_, err := m.startScript("exec sleep 100", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Running() || len(m.Pids()) != 1 {
		t.Fatalf("after Start: running %v, pids %v", m.Running(), m.Pids())
	}
	if _, err := os.Stat(m.Path("vmm.pid")); err != nil {
		t.Errorf("no pid file: %v", err)
	}
	if err := m.CheckLive("dial agent"); err != nil {
		t.Errorf("CheckLive of a running VM: %v", err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, m)
	if !shutdown || !released {
		t.Errorf("Stop: Shutdown called %v, Release called %v", shutdown, released)
	}
	if err := m.ExitError(); err != nil {
		t.Errorf("ExitError after Stop: %v", err)
	}
	if len(m.Pids()) != 0 {
		t.Errorf("pids after Stop: %v", m.Pids())
	}
	if _, err := os.Stat(m.Path("vmm.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after Stop: %v", err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := m.Start(context.Background(), time.Second, func(context.Context) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "Start called twice or after Stop") {
		t.Errorf("Start after Stop: %v", err)
	}
	if err := m.Op("resize", func() error { return nil }); err == nil || !strings.Contains(err.Error(), "resize: VM is not running") {
		t.Errorf("Op after Stop: %v", err)
	}
}

// A failed start stops what it started, and its error, with what the VMM
// said, is the ExitError.
func TestFailedStartStopsEverything(t *testing.T) {
	m := testMachine(t, Spec{})
	var proc *childproc.Process
	err := m.Start(context.Background(), 5*time.Second, func(ctx context.Context) error {
		if err := m.PrepareDir(); err != nil {
			return err
		}
		var err error
		if proc, err = m.startScript("echo listening on nothing; exec sleep 100", nil); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // let it write its log
		return m.Failure(errors.New("create the VM: HTTP 500"))
	})
	want := "fakevmm: start sandbox t1: create the VM: HTTP 500; last lines of vmm.log: listening on nothing"
	if err == nil || err.Error() != want {
		t.Fatalf("Start = %v, want %q", err, want)
	}
	if !proc.Exited() {
		t.Error("the VMM outlived a failed start")
	}
	waitDone(t, m)
	if got := m.ExitError(); got == nil || got.Error() != want {
		t.Errorf("ExitError = %v", got)
	}
}

// WaitReady stops at once when the VMM dies, and on ctx's end.
func TestWaitReady(t *testing.T) {
	notThere := func(context.Context) error { return syscall.ENOENT }
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		try     func(context.Context) error
		// late hands WaitReady a ctx whose deadline has passed while its
		// own timer has not fired yet (a loaded machine).
		late bool
		want []string
	}{
		{"VMM died during WaitReady", "echo bad flag; exit 2", 5 * time.Second, notThere, false,
			[]string{"fakevmm exited during start: fakevmm for sandbox t1 exited unexpectedly: exit status 2", "bad flag"}},
		{"VMM never ready", "exec sleep 100", 200 * time.Millisecond, notThere, false,
			[]string{"waiting for qmp: context deadline exceeded"}},
		{"VMM answering garbage", "exec sleep 100", 5 * time.Second,
			func(context.Context) error { return errors.New("garbage") }, false, []string{"qmp: garbage"}},
		// ctx ends while a try is under way (a dial or a call cut short by
		// ctx's deadline): that is still the wait's end, not the VMM's answer.
		{"ctx ended during a try", "exec sleep 100", 200 * time.Millisecond,
			func(ctx context.Context) error {
				<-ctx.Done()
				return fmt.Errorf("GET vmm.ping: no answer: %w", ctx.Err())
			}, false, []string{"waiting for qmp: context deadline exceeded (last try: GET vmm.ping"}},
		// The same when the try's connection deadline, set from ctx's, fired
		// and ctx's own timer has not yet: ctx's deadline has passed, which
		// is the end of the wait.
		{"ctx's deadline passed during a try, its timer late", "exec sleep 100", 5 * time.Second,
			func(context.Context) error { return fmt.Errorf("read greeting: %w", os.ErrDeadlineExceeded) }, true,
			[]string{"waiting for qmp: context deadline exceeded (last try: read greeting: i/o timeout)"}},
	}
	for _, tt := range tests {
		m := testMachine(t, Spec{})
		err := m.Start(context.Background(), tt.timeout, func(ctx context.Context) error {
			if _, err := m.startScript(tt.script, nil); err != nil {
				return err
			}
			if tt.late {
				ctx = lateCtx{ctx, time.Now()}
			}
			return m.WaitReady(ctx, tt.try, "qmp", "waiting for qmp")
		})
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want it to contain %q", tt.name, err, w)
			}
		}
	}
}

// lateCtx reports a deadline earlier than the one its timer ends it at.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// An unasked exit is the VM's death, with the exit status, the note for
// status 0 and the console's last lines.
func TestDeath(t *testing.T) {
	for _, tt := range []struct {
		name, script, gone string
		want               []string
	}{
		{"vmm exits 0", "sleep 0.2; exit 0", "",
			[]string{"fakevmm for sandbox t1 exited unexpectedly: exit status 0 (the guest powered off)", "last lines of console.log: booting | Kernel panic"}},
		{"vmm killed", "sleep 0.2; kill -9 $$", "",
			[]string{"exited unexpectedly: signal: killed"}},
		{"guest reset", "exec sleep 100", "the guest reset",
			[]string{"fakevmm for sandbox t1: the guest reset", "last lines of console.log: booting | Kernel panic"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := testMachine(t, Spec{CleanExitNote: "the guest powered off"})
			gone := make(chan string, 1)
			if err := m.Start(context.Background(), 5*time.Second, func(context.Context) error {
				os.WriteFile(m.Path("console.log"), []byte("booting\nKernel panic\n"), 0o600)
				_, err := m.startScript(tt.script, gone)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if tt.gone != "" {
				gone <- tt.gone
			}
			waitDone(t, m)
			err := m.ExitError()
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("ExitError = %v, want it to contain %q", err, w)
				}
			}
			if err := m.CheckLive("dial agent"); err == nil || !strings.Contains(err.Error(), "dial agent: VM has exited") {
				t.Errorf("CheckLive after death: %v", err)
			}
			// Done closes first; what is left is killed right after.
			for deadline := time.Now().Add(5 * time.Second); len(m.Pids()) > 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if pids := m.Pids(); len(pids) != 0 {
				t.Errorf("pids after death: %v", pids)
			}
		})
	}
}

func TestPath(t *testing.T) {
	m := New(Spec{StateDir: "/run/podvm/sandboxes/x"})
	if got := m.Path("qmp.sock"); got != filepath.Join("/run/podvm/sandboxes/x", "qmp.sock") {
		t.Errorf("Path = %q", got)
	}
}
