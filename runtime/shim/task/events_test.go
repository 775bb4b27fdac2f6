package task

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"

	"github.com/podvm/podvm/agent/api"
)

// floodingAgent is a hostile agent: GetOOMEvent answers at once, every
// time, naming random ids, other pods' containers, huge ids and, now and
// then, one of the shim's own containers.
type floodingAgent struct {
	own   []string
	calls atomic.Int64
	huge  string
}

func (a *floodingAgent) GetOOMEvent(context.Context, *api.GetOOMEventRequest) (*api.OOMEvent, error) {
	n := a.calls.Add(1)
	var id string
	switch n % 4 {
	case 0:
		id = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	case 1:
		id = fmt.Sprintf("victim-pod-%d-app", n%1000)
	case 2:
		if n < 20000 { // enough to show growth without eating the machine
			id = fmt.Sprintf("%d-%s", n, a.huge)
		} else {
			id = a.huge
		}
	case 3:
		id = a.own[int(n/4)%len(a.own)]
	}
	return &api.OOMEvent{ContainerId: id}, nil
}

// TestOOMFloodFromHostileGuest: an agent that floods OOM events for N
// seconds leaves the shim's OOM state bounded by its own containers,
// publishes TaskOOM only for them (once each), and is asked at a paced
// rate without spinning a CPU.
func TestOOMFloodFromHostileGuest(t *testing.T) {
	const flood = 2 * time.Second
	s, pub := testService(t)
	own := []string{"app", "sidecar"}
	for i, id := range own {
		addTestContainer(t, s, id, i == 0)
	}
	agent := &floodingAgent{own: own, huge: strings.Repeat("x", 4096)}
	done := make(chan struct{})
	returned := make(chan struct{})
	cpu0 := cpuTime(t)
	begin := time.Now()
	go func() { s.forwardOOMEvents(agent, done); close(returned) }()
	time.Sleep(flood)
	close(done)
	flooded := time.Since(begin) // a loaded machine may oversleep
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the OOM loop did not return after its VM was gone")
	}
	cpu := cpuTime(t) - cpu0
	time.Sleep(100 * time.Millisecond) // let the publisher drain

	s.mu.Lock()
	kept, bytes := len(s.oomReported), 0
	for id := range s.oomReported {
		bytes += len(id)
	}
	s.mu.Unlock()
	if kept > len(own) || bytes > len("app")+len("sidecar") {
		t.Errorf("OOM state holds %d ids, %d bytes after the flood; want at most the shim's %d containers", kept, bytes, len(own))
	}
	published := map[string]int{}
	for _, e := range pub.published() {
		if oom, ok := e.(*eventstypes.TaskOOM); ok {
			published[oom.ContainerID]++
		}
	}
	for id, n := range published {
		if id != "app" && id != "sidecar" {
			t.Errorf("TaskOOM published for %.40q, which is not a container of this shim", id)
		} else if n != 1 {
			t.Errorf("TaskOOM published %d times for %s; want once", n, id)
		}
	}
	if len(published) > len(own) {
		t.Errorf("TaskOOM published for %d containers in %v; want at most %d", len(published), flood, len(own))
	}
	calls := agent.calls.Load()
	if limit := int64(flooded/oomPace) + 5; calls > limit {
		t.Errorf("GetOOMEvent called %d times in %v; a paced loop calls at most %d", calls, flooded.Round(time.Millisecond), limit)
	}
	if cpu > flooded/4 {
		t.Errorf("the process used %v of CPU during a %v flood; the loop spins", cpu, flooded.Round(time.Millisecond))
	}
}

// cpuTime is the CPU time this process used so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestOOMOfOwnContainerPublishedOnce: a real OOM kill still reaches
// containerd, once, and forgetting the container drops its mark.
func TestOOMOfOwnContainerPublishedOnce(t *testing.T) {
	s, pub := testService(t)
	addTestContainer(t, s, "app", true)
	if !s.sendOOM("app") || !s.sendOOM("app") {
		t.Fatal("an OOM kill of the shim's own container was rejected")
	}
	if s.sendOOM("other-pod-app") {
		t.Error("an OOM kill of another pod's container was accepted")
	}
	s.forget("app")
	s.mu.Lock()
	n := len(s.oomReported)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("OOM state keeps %d ids after the container was deleted", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(pub.published()) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := pub.published(); len(got) != 1 || got[0].(*eventstypes.TaskOOM).ContainerID != "app" {
		t.Errorf("published %v; want one TaskOOM for app", got)
	}
}
