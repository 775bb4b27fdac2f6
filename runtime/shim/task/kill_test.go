package task

import (
	"context"
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
			time.Sleep(3 * killConfirmTimeout)
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
