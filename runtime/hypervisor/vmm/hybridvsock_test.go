package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

func TestHybridVsockArgs(t *testing.T) {
	want := []string{"--guest-cid", "3", "--socket", "/proc/self/fd/3/vhost.sock", "--uds-path", "/proc/self/fd/3/agent.sock"}
	if got := HybridVsockArgs(); !slices.Equal(got, want) {
		t.Errorf("HybridVsockArgs = %q, want %q", got, want)
	}
}

// fakeVsockd writes a stand-in for vhost-device-vsock: body runs with the
// arguments of HybridVsockArgs ($4 the vhost-user socket, $6 the agent's).
// The directory holding it is open to all, for a run as another uid.
func fakeVsockd(t *testing.T, body string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pvfv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "vhost-device-vsock")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Its sockets appear, so Start goes on; the VMM's death and Stop take the
// daemon, its directory and its pid file with them.
func TestHybridVsockLifecycle(t *testing.T) {
	m := testMachine(t, Spec{})
	bin := fakeVsockd(t, `sleep 0.05; : >"$4"; : >"$6"; exec sleep 100`)
	var jail *childproc.Jail
	if os.Geteuid() == 0 {
		jail = &childproc.Jail{UID: 65534, GID: 65534}
	}
	err := m.Start(context.Background(), 5*time.Second, func(ctx context.Context) error {
		if err := m.PrepareDir(); err != nil {
			return err
		}
		if err := m.StartHybridVsock(ctx, HybridVsockConfig{Name: "vsockd for sandbox t1", Binary: bin, Jail: jail}); err != nil {
			return err
		}
		for _, s := range []string{HybridVsockVhostSocket, HybridVsockAgentSocket} {
			if _, err := os.Stat(m.Path(s)); err != nil {
				t.Errorf("StartHybridVsock returned before %s existed: %v", s, err)
			}
		}
		_, err := m.startScript("exec sleep 100", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(m.Path(HybridVsockDirName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 || (jail != nil && st.Sys().(*syscall.Stat_t).Uid != jail.UID) {
		t.Errorf("vsock dir %v owned by %d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
	}
	pids := m.Pids()
	if len(pids) != 2 {
		t.Fatalf("Pids = %v, want the VMM and vhost-device-vsock", pids)
	}
	if _, err := os.Stat(m.Path(HybridVsockPidName)); err != nil {
		t.Errorf("pid file: %v", err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pids[1], 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("vhost-device-vsock (pid %d) outlived Stop: %v", pids[1], err)
	}
	for _, p := range []string{HybridVsockDirName, HybridVsockPidName} {
		if _, err := os.Stat(m.Path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Stop: %v", p, err)
		}
	}
}

// Its death is the VM's: the guest has lost its agent.
func TestHybridVsockDeath(t *testing.T) {
	m := testMachine(t, Spec{})
	bin := fakeVsockd(t, `: >"$4"; : >"$6"; sleep 0.3; echo vring error; exit 1`)
	if err := m.Start(context.Background(), 5*time.Second, func(ctx context.Context) error {
		if err := m.StartHybridVsock(ctx, HybridVsockConfig{Name: "vsockd for sandbox t1", Binary: bin}); err != nil {
			return err
		}
		_, err := m.startScript("exec sleep 100", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, m)
	err := m.ExitError()
	for _, w := range []string{"vsockd for sandbox t1 exited unexpectedly: exit status 1", "the guest lost its agent channel", "vring error"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("ExitError = %v, want it to contain %q", err, w)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); len(m.Pids()) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if pids := m.Pids(); len(pids) != 0 {
		t.Errorf("the VMM outlived vhost-device-vsock: %v", pids)
	}
}

// A daemon that dies before its sockets exist, or never makes them, fails
// Start with why, and leaves nothing.
func TestHybridVsockStartFailure(t *testing.T) {
	for _, tt := range []struct {
		name, body, want string
		timeout          time.Duration
	}{
		{"exits", "echo unknown option; exit 2", "vsockd for sandbox t1 exited unexpectedly: exit status 2 (during start); last lines of", 5 * time.Second},
		{"no sockets", "exec sleep 100", "waiting for the sockets of vsockd for sandbox t1: context deadline exceeded", 200 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := testMachine(t, Spec{})
			bin := fakeVsockd(t, tt.body)
			err := m.Start(context.Background(), tt.timeout, func(ctx context.Context) error {
				return m.StartHybridVsock(ctx, HybridVsockConfig{Name: "vsockd for sandbox t1", Binary: bin})
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want it to contain %q", err, tt.want)
			}
			if _, err := os.Stat(m.Path(HybridVsockDirName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("vsock dir after a failed start: %v", err)
			}
		})
	}
}

// A configured path must be there; otherwise PATH is searched, and a
// miss says where it looked.
func TestFindHybridVsock(t *testing.T) {
	bin := fakeVsockd(t, "exit 0")
	if got, err := FindHybridVsock(bin); err != nil || got != bin {
		t.Errorf("configured: %q, %v", got, err)
	}
	if _, err := FindHybridVsock(bin + ".missing"); err == nil {
		t.Error("a missing configured path was accepted")
	}
	t.Setenv("PATH", filepath.Dir(bin))
	if got, err := FindHybridVsock(""); err != nil || got != bin {
		t.Errorf("on PATH: %q, %v", got, err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := FindHybridVsock(""); err == nil || !strings.Contains(err.Error(), "libexec/podvm/vhost-device-vsock nor on PATH") {
		t.Errorf("nowhere: %v", err)
	}
}
