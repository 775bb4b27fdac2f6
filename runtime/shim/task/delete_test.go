package task

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/podvm/podvm/agent/api"
)

// recordedShutdown is a shutdown.Service that records that the shim was
// told to end.
type recordedShutdown struct {
	mu     sync.Mutex
	called bool
}

func (r *recordedShutdown) Shutdown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.called = true
}
func (r *recordedShutdown) RegisterCallback(func(context.Context) error) {}
func (r *recordedShutdown) Done() <-chan struct{}                        { return nil }
func (r *recordedShutdown) Err() error                                   { return nil }

func (r *recordedShutdown) wasCalled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.called
}

// destroyingService is a Service whose VM is being destroyed until the
// returned channel is closed, with its shutdown recorded.
func destroyingService(t *testing.T) (*Service, *recordedShutdown, chan struct{}) {
	s, _ := testService(t)
	sd := &recordedShutdown{}
	s.shutdown = sd
	s.vmGone = make(chan struct{})
	return s, sd, s.vmGone
}

// Shutdown answers only once the VM its last container's Delete began to
// destroy is gone: containerd and CRI take its answer to mean the pod left
// nothing (TestCRIPodHostCgroupIntegration checks the host cgroup).
func TestShutdownWaitsForTheVMsDestroy(t *testing.T) {
	s, sd, gone := destroyingService(t)
	answered := make(chan error, 1)
	go func() {
		_, err := s.Shutdown(context.Background(), &taskAPI.ShutdownRequest{ID: "pod"})
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("Shutdown answered (%v) while the VM was still being destroyed", err)
	case <-time.After(100 * time.Millisecond):
	}
	if sd.wasCalled() {
		t.Fatal("the shim was told to end before the VM was destroyed")
	}
	close(gone)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if !sd.wasCalled() {
		t.Error("the shim was not told to end")
	}
}

// A destroy that outlasts containerd's deadline fails Shutdown, and the
// shim still ends (once the destroy is done, through its callback).
func TestShutdownDeadlineWhileDestroying(t *testing.T) {
	s, sd, _ := destroyingService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: "pod"})
	if !errors.Is(errgrpc.ToNative(err), context.DeadlineExceeded) {
		t.Errorf("Shutdown past its deadline: %v, want deadline exceeded", err)
	}
	if !sd.wasCalled() {
		t.Error("the shim was not told to end")
	}
}

// A shim that still serves a container does not end, and does not wait.
func TestShutdownWithContainersLeft(t *testing.T) {
	s, sd, _ := destroyingService(t)
	addTestContainer(t, s, "app", false)
	if _, err := s.Shutdown(context.Background(), &taskAPI.ShutdownRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	if sd.wasCalled() {
		t.Error("the shim was told to end while it still serves a container")
	}
}

// closingGuest is an agent whose channel closes while a signal is on its
// way, after the process it was for has exited (the VM's destroy began).
type closingGuest struct {
	silentGuest
	exit func()
}

func (g closingGuest) SignalProcess(ctx context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
	g.exit()
	return nil, errors.New("ttrpc: closed")
}

// A kill that meets the end of its process's VM gets containerd's usual
// answer for a finished process, not the channel's error.
func TestKillOfProcessEndingWithItsVM(t *testing.T) {
	s, _ := testService(t)
	addTestContainer(t, s, "app", true)
	c, _ := s.containers.Get("app")
	c.Init().SetRunning()
	s.agent = closingGuest{exit: func() { c.Init().SetExited(0, time.Now()) }}
	_, err := s.Kill(context.Background(), &taskAPI.KillRequest{ID: "app", Signal: 9})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("kill: %v, want not found (process already finished)", err)
	}
}

// countingGuest counts the signals sent into the guest.
type countingGuest struct {
	silentGuest
	signals *atomic.Int32
}

func (g countingGuest) SignalProcess(ctx context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
	g.signals.Add(1)
	return &api.Empty{}, nil
}

// StopPodSandbox's SIGKILL of a pod's pause container, alone in its VM,
// is recorded at once; any other kill goes to the guest.
func TestKillOfSandboxContainerAloneInItsVM(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cri         bool
		others      bool
		signal      uint32
		wantSignals int32
		wantExit    bool
	}{
		{"CRI sandbox alone, SIGKILL: recorded, nothing sent", true, false, 9, 0, true},
		{"CRI sandbox alone, SIGTERM: sent", true, false, 15, 1, false},
		{"CRI sandbox with a container left: sent", true, true, 9, 1, false},
		{"lone container (ctr run), SIGKILL: sent", false, false, 9, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, pub := testService(t)
			var n atomic.Int32
			s.agent = countingGuest{signals: &n}
			addTestContainer(t, s, "pod", true)
			if tc.cri {
				s.criSandbox = "pod"
			}
			if tc.others {
				addTestContainer(t, s, "app", false)
			}
			c, _ := s.containers.Get("pod")
			c.Init().SetRunning()
			if _, err := s.Kill(context.Background(), &taskAPI.KillRequest{ID: "pod", Signal: tc.signal}); err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != tc.wantSignals {
				t.Errorf("%d signals sent into the guest, want %d", got, tc.wantSignals)
			}
			status, exit, _ := c.Init().State()
			if stopped := status == task.Status_STOPPED; stopped != tc.wantExit || (stopped && exit != 137) {
				t.Errorf("after the kill: status %v, exit %d; want stopped %v with 137", status, exit, tc.wantExit)
			}
			if tc.wantExit {
				time.Sleep(50 * time.Millisecond)
				if x := exits(pub); len(x) != 1 || x[0].ExitStatus != 137 {
					t.Errorf("published exits %v, want one with 137", x)
				}
			}
		})
	}
}
