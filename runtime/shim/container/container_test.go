package container

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/stdio"
)

// fakeVM is the pod and its agent; calls lists what was asked, in order,
// and fail names the call that fails.
type fakeVM struct {
	api.AgentServiceService
	calls []string
	fail  string
	done  chan struct{}
}

func newFakeVM(fail string) *fakeVM { return &fakeVM{fail: fail, done: make(chan struct{})} }

func (f *fakeVM) call(name string) error {
	f.calls = append(f.calls, name)
	if name == f.fail {
		return errors.New(name + " failed")
	}
	return nil
}

func (f *fakeVM) MountRootfs(context.Context, string, []mount.Mount) error { return f.call("mount") }
func (f *fakeVM) ShareMounts(context.Context, string, []guestspec.SharedMount) error {
	return f.call("share")
}
func (f *fakeVM) UnmountRootfs(string) error { return f.call("unmount") }
func (f *fakeVM) SealRootfs(string) error    { return f.call("seal") }
func (f *fakeVM) Done() <-chan struct{}      { return f.done }

func (f *fakeVM) CreateContainer(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	if err := f.call("create"); err != nil {
		return nil, err
	}
	return &api.CreateContainerResponse{Pid: 7}, nil
}
func (f *fakeVM) RemoveContainer(context.Context, *api.RemoveContainerRequest) (*api.Empty, error) {
	return &api.Empty{}, f.call("remove")
}
func (f *fakeVM) ExecProcess(context.Context, *api.ExecProcessRequest) (*api.Empty, error) {
	return &api.Empty{}, f.call("exec")
}
func (f *fakeVM) SignalProcess(context.Context, *api.SignalProcessRequest) (*api.Empty, error) {
	return &api.Empty{}, f.call("signal")
}
func (f *fakeVM) RemoveProcess(context.Context, *api.RemoveProcessRequest) (*api.Empty, error) {
	return &api.Empty{}, f.call("removeProcess")
}

func testConfig(streams stdio.Streams) Config {
	return Config{ID: "c1", Bundle: "/b", Spec: &Spec{Guest: &specs.Spec{}}, Streams: streams}
}

// A stdout fifo that cannot be opened makes the relay fail to start.
var brokenStdio = stdio.Streams{Stdout: "/nonexistent/podvm-test/stdout"}

func TestNewUndoesWhatItDid(t *testing.T) {
	for _, tc := range []struct {
		fail    string
		streams stdio.Streams
		calls   []string
	}{
		{"", stdio.Streams{}, []string{"mount", "share", "create"}},
		{"mount", stdio.Streams{}, []string{"mount"}},
		{"share", stdio.Streams{}, []string{"mount", "share", "unmount"}},
		{"create", stdio.Streams{}, []string{"mount", "share", "create", "unmount"}},
		{"stdio", brokenStdio, []string{"mount", "share", "create", "remove", "unmount"}},
	} {
		vm := newFakeVM(tc.fail)
		c, err := New(context.Background(), vm, vm, testConfig(tc.streams))
		if (err != nil) != (tc.fail != "") {
			t.Errorf("fail %q: New error %v", tc.fail, err)
		}
		if !reflect.DeepEqual(vm.calls, tc.calls) {
			t.Errorf("fail %q: calls %v, want %v", tc.fail, vm.calls, tc.calls)
		}
		if err == nil {
			if got := c.Init().GuestPid(); got != 7 {
				t.Errorf("init guest pid %d, want the agent's 7", got)
			}
			if st, _, _ := c.Init().State(); st != task.Status_CREATED {
				t.Errorf("init status %v, want CREATED", st)
			}
		}
	}
}

func TestDeleteAsksTheGuestOnlyWhileTheVMRuns(t *testing.T) {
	for _, gone := range []bool{false, true} {
		vm := newFakeVM("")
		c, err := New(context.Background(), vm, vm, testConfig(stdio.Streams{}))
		if err != nil {
			t.Fatal(err)
		}
		vm.calls = nil
		if gone {
			close(vm.done)
		}
		c.Delete(context.Background())
		want := []string{"remove", "unmount"}
		if gone {
			want = []string{"unmount"}
		}
		if !reflect.DeepEqual(vm.calls, want) {
			t.Errorf("VM gone %v: calls %v, want %v", gone, vm.calls, want)
		}
	}
}

func TestDetachLeavesTheGuestAlone(t *testing.T) {
	vm := newFakeVM("")
	c, err := New(context.Background(), vm, vm, testConfig(stdio.Streams{}))
	if err != nil {
		t.Fatal(err)
	}
	vm.calls = nil
	c.Detach(context.Background())
	if want := []string{"unmount"}; !reflect.DeepEqual(vm.calls, want) {
		t.Errorf("calls %v, want %v", vm.calls, want)
	}
}

func TestExecs(t *testing.T) {
	vm := newFakeVM("")
	c, err := New(context.Background(), vm, vm, testConfig(stdio.Streams{}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.AddExec("e1", stdio.Streams{}, []byte("{}")) {
		t.Fatal("AddExec e1 refused")
	}
	if c.AddExec("e1", stdio.Streams{}, nil) || c.AddExec("", stdio.Streams{}, nil) {
		t.Error("AddExec took a duplicate or empty exec id")
	}
	ps := c.Processes()
	if len(ps) != 2 || ps[0].ExecID() != "e1" || ps[1] != c.Init() {
		t.Errorf("Processes = %v, want the exec, then the init", ps)
	}
	p, ok := c.Exec("e1")
	if !ok {
		t.Fatal("exec e1 not found")
	}
	if err := c.StartExec(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	c.DeleteExec(context.Background(), p)
	if _, ok := c.Exec("e1"); ok {
		t.Error("exec e1 still there after DeleteExec")
	}
	if st, status, _ := p.State(); st != task.Status_STOPPED || status != ExitStatusUnknown {
		t.Errorf("deleted exec: %v, status %d; want STOPPED, %d", st, status, ExitStatusUnknown)
	}
	if want := []string{"mount", "share", "create", "exec", "removeProcess"}; !reflect.DeepEqual(vm.calls, want) {
		t.Errorf("calls %v, want %v", vm.calls, want)
	}
}

func TestStartExecKillsWhatItCannotRelay(t *testing.T) {
	vm := newFakeVM("")
	c, err := New(context.Background(), vm, vm, testConfig(stdio.Streams{}))
	if err != nil {
		t.Fatal(err)
	}
	c.AddExec("e1", brokenStdio, []byte("{}"))
	p, _ := c.Exec("e1")
	vm.calls = nil
	if err := c.StartExec(context.Background(), p); err == nil {
		t.Fatal("StartExec with a broken stdout succeeded")
	}
	if want := []string{"exec", "signal"}; !reflect.DeepEqual(vm.calls, want) {
		t.Errorf("calls %v, want %v", vm.calls, want)
	}
}

func TestProcessExitsOnce(t *testing.T) {
	p := newProcess("c1", "", stdio.Streams{})
	if !p.SetRunning() || p.SetRunning() {
		t.Error("SetRunning must succeed once, from created")
	}
	at := time.Unix(100, 0)
	if !p.SetExited(3, at) || p.SetExited(ExitStatusUnknown, time.Now()) {
		t.Error("SetExited must record one exit")
	}
	if st, status, when := p.State(); st != task.Status_STOPPED || status != 3 || !when.Equal(at) {
		t.Errorf("State = %v %d %v; want STOPPED 3 %v", st, status, when, at)
	}
	if err := p.Wait(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestRootfsMounts(t *testing.T) {
	spec := &specs.Spec{Root: &specs.Root{Path: "rootfs"}}
	got := RootfsMounts(nil, spec, "/bundle")
	want := []mount.Mount{{Type: "bind", Source: filepath.Join("/bundle", "rootfs"), Options: []string{"rbind", "rw"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("no snapshot: %v, want %v", got, want)
	}
	snap := []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l"}}}
	got = RootfsMounts(snap, spec, "/bundle")
	want = []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot: %v, want %v", got, want)
	}
}

func TestTable(t *testing.T) {
	tb := NewTable()
	tb.Add(&Container{ID: "c1"})
	if !tb.Has("c1") || tb.Has("c2") || tb.Len() != 1 {
		t.Error("table does not know its own container, or knows another")
	}
	tb.Remove("c1")
	if tb.Has("c1") || len(tb.All()) != 0 {
		t.Error("removed container still in the table")
	}
}

// A read-only rootfs is sealed on the host once the guest created the
// container; a seal that fails removes it from the guest and unmounts.
func TestNewSealsReadonlyRootfs(t *testing.T) {
	for _, tc := range []struct {
		readonly bool
		fail     string
		calls    []string
	}{
		{false, "", []string{"mount", "share", "create"}},
		{true, "", []string{"mount", "share", "create", "seal"}},
		{true, "seal", []string{"mount", "share", "create", "seal", "remove", "unmount"}},
	} {
		vm := newFakeVM(tc.fail)
		cfg := testConfig(stdio.Streams{})
		cfg.Spec.Guest.Root = &specs.Root{Path: "/rootfs", Readonly: tc.readonly}
		_, err := New(context.Background(), vm, vm, cfg)
		if (err != nil) != (tc.fail != "") {
			t.Errorf("readonly %v, fail %q: New error %v", tc.readonly, tc.fail, err)
		}
		if !reflect.DeepEqual(vm.calls, tc.calls) {
			t.Errorf("readonly %v, fail %q: calls %v, want %v", tc.readonly, tc.fail, vm.calls, tc.calls)
		}
	}
}
