package task

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"

	"github.com/podvm/podvm/agent/api"
)

// silentGuest accepts every signal and never reports an exit: a guest
// that owns its agent may do just that.
type silentGuest struct{ api.AgentServiceService }

func (silentGuest) SignalProcess(context.Context, *api.SignalProcessRequest) (*api.Empty, error) {
	return &api.Empty{}, nil
}

// exits lists the TaskExit events published so far.
func exits(pub *capturePublisher) []*eventstypes.TaskExit {
	var out []*eventstypes.TaskExit
	for _, e := range pub.published() {
		if x, ok := e.(*eventstypes.TaskExit); ok {
			out = append(out, x)
		}
	}
	return out
}

func TestKillUnconfirmedBySilentGuest(t *testing.T) {
	defer func(d time.Duration) { killConfirmTimeout = d }(killConfirmTimeout)
	killConfirmTimeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name       string
		signal     syscall.Signal
		guestExits bool // the guest reports the exit, status 0, at once
		wantStatus uint32
		wantExits  int
	}{
		{"SIGKILL never confirmed: recorded as killed", syscall.SIGKILL, false, 137, 1},
		{"SIGKILL confirmed: the guest's exit stands", syscall.SIGKILL, true, 0, 1},
		{"SIGTERM: no exit is made up (the process may handle it)", syscall.SIGTERM, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, pub := testService(t)
			s.agent = silentGuest{}
			addTestContainer(t, s, "app", false)
			c, _ := s.containers.Get("app")
			c.Init().SetRunning()
			if _, err := s.Kill(context.Background(), &taskAPI.KillRequest{ID: "app", Signal: uint32(tc.signal)}); err != nil {
				t.Fatal(err)
			}
			if tc.guestExits && c.Init().SetExited(0, time.Now()) {
				s.sendExit(c.Init())
			}
			time.Sleep(3 * killConfirmTimeout) // time for a second exit, which must not come
			// The made-up exit comes from a goroutine that a loaded
			// machine may run later than that.
			for deadline := time.Now().Add(10 * time.Second); len(exits(pub)) < tc.wantExits && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			got := exits(pub)
			if len(got) != tc.wantExits {
				t.Fatalf("published %d exits, want %d: %v", len(got), tc.wantExits, got)
			}
			if len(got) == 1 && got[0].ExitStatus != tc.wantStatus {
				t.Errorf("exit status %d, want %d", got[0].ExitStatus, tc.wantStatus)
			}
		})
	}
}

// stallingStats never answers StatsContainer until the caller gives up,
// and counts the calls.
type stallingStats struct {
	api.AgentServiceService
	calls atomic.Int32
}

func (g *stallingStats) StatsContainer(ctx context.Context, _ *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	g.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// containerd asks for stats while it handles an exit (to look for an OOM
// kill) within 10 s: a silent guest must not hold that, and a stopped
// container's stats need no guest at all.
func TestStatsOfSilentGuestBounded(t *testing.T) {
	defer func(d time.Duration) { statsTimeout = d }(statsTimeout)
	statsTimeout = 300 * time.Millisecond
	s, _ := testService(t)
	g := &stallingStats{}
	s.agent = g
	addTestContainer(t, s, "app", false)
	c, _ := s.containers.Get("app")
	c.Init().SetRunning()

	start := time.Now()
	if _, err := s.Stats(context.Background(), &taskAPI.StatsRequest{ID: "app"}); err == nil {
		t.Fatal("stats of a running container whose guest never answers: no error")
	}
	if d := time.Since(start); d > 3*statsTimeout {
		t.Errorf("stats of a silent guest took %s, bound %s", d, statsTimeout)
	}

	c.Init().SetExited(137, time.Now())
	resp, err := s.Stats(context.Background(), &taskAPI.StatsRequest{ID: "app"})
	if err != nil || resp.Stats.GetTypeUrl() != cgroupV2MetricsType {
		t.Fatalf("stats of a stopped container: %v, %v; want empty cgroup v2 metrics", resp, err)
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("the guest was asked %d times, want once (never for the stopped container)", n)
	}
}
