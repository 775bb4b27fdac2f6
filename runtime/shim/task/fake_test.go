package task

import (
	"context"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/shim/container"
	"github.com/podvm/podvm/runtime/stdio"
)

// capturePublisher records what the shim publishes.
type capturePublisher struct {
	mu     sync.Mutex
	events []any
}

func (p *capturePublisher) Publish(_ context.Context, _ string, e events.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
	return nil
}

func (p *capturePublisher) Close() error { return nil }

func (p *capturePublisher) published() []any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]any(nil), p.events...)
}

// fakePod is a pod VM whose share does nothing and whose agent creates
// every container; the attacker tests embed it and override what they
// attack with.
type fakePod struct {
	api.AgentServiceService
	done chan struct{}
}

func (fakePod) MountRootfs(context.Context, string, []mount.Mount) error           { return nil }
func (fakePod) ShareMounts(context.Context, string, []guestspec.SharedMount) error { return nil }
func (fakePod) UnmountRootfs(string) error                                         { return nil }
func (fakePod) SealRootfs(string) error                                            { return nil }
func (f fakePod) Done() <-chan struct{}                                            { return f.done }
func (fakePod) CreateContainer(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	return &api.CreateContainerResponse{Pid: 7}, nil
}

// testService is a Service with no VM whose events go to the returned
// publisher.
func testService(t *testing.T) (*Service, *capturePublisher) {
	ctx, cancel := context.WithCancel(context.Background())
	pub := &capturePublisher{}
	s := &Service{
		ctx: ctx, publisher: pub, events: make(chan any, 128),
		containers: container.NewTable(), oomReported: map[string]bool{},
	}
	go s.forwardEvents()
	t.Cleanup(cancel)
	return s, pub
}

// addTestContainer creates container id in the service's table.
func addTestContainer(t *testing.T, s *Service, id string, owner bool) {
	pod := fakePod{done: make(chan struct{})}
	c, err := container.New(context.Background(), pod, pod, container.Config{
		ID: id, Owner: owner, Spec: &container.Spec{Guest: &specs.Spec{}}, Streams: stdio.Streams{},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.addContainer(c)
}
