package cloudhypervisor

// Lifecycle tests against the fake VMM (fake_test.go): the sequence of API
// calls for boot, resize and teardown, every body checked against the
// v53.0 schema; API errors during start; a VMM that never listens or never
// answers; deaths of the VMM, of virtiofsd and of the guest.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// startFakeVM creates and starts a VM on the fake, registering its Stop.
func startFakeVM(t *testing.T, e *fakeEnv) *VM {
	t.Helper()
	v, err := e.driver().Create(context.Background(), e.cfg)
	must(t, err)
	t.Cleanup(func() { v.Stop(context.Background()) })
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v\nschema errors: %v", err, e.fake.schemaErrors())
	}
	return v.(*VM)
}

// assertNoSchemaErrors fails on any request the driver sent, or answer the
// fake gave, that the v53.0 schema does not allow.
func assertNoSchemaErrors(t *testing.T, f *fakeVMM) {
	t.Helper()
	for _, err := range f.schemaErrors() {
		t.Errorf("schema: %v", err)
	}
}

// assertTornDown checks that Done is closed, no process of the VM is left
// and no socket or pid file stays in the state dir (logs do).
func assertTornDown(t *testing.T, v *VM, pids []int) {
	t.Helper()
	select {
	case <-v.Done():
	case <-time.After(5 * time.Second):
		t.Error("Done not closed")
	}
	assertProcessesGone(t, pids)
	if p := v.Pids(); len(p) != 0 {
		t.Errorf("Pids after stop = %v", p)
	}
	ents, _ := os.ReadDir(v.cfg.StateDir)
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 || strings.HasSuffix(e.Name(), ".sock") || strings.HasSuffix(e.Name(), ".pid") ||
			strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("left behind in the state dir: %s", e.Name())
		}
	}
}

// The whole life of a VM with a NIC and hot-plug room: the calls in order,
// their bodies, the process arguments, the tap fd, the agent channel,
// resize, and a teardown that leaves nothing.
func TestBootResizeTeardownSequence(t *testing.T) {
	checkNoLeaks(t)
	e := newFakeEnv(t, true)
	e.opts.MaxVCPUs, e.opts.MemoryHotplugMiB = 4, 512
	tapFile, err := os.CreateTemp(e.dir, "tap")
	must(t, err)
	defer tapFile.Close()
	e.cfg.Net = []hypervisor.NetDevice{{Tap: tapFile, VnetHdr: true, MAC: "02:42:AC:11:00:02", MTU: 1500}}
	e.cfg.KernelParams = []string{"podvm.test=1"}
	e.fake.setVsockRefusals(2) // the agent is not listening at first
	cg := &recordingCgroup{}
	e.cfg.Cgroup = cg

	v := startFakeVM(t, e)
	pids := v.Pids()
	if len(pids) != 2 {
		t.Fatalf("Pids = %v, want cloud-hypervisor and virtiofsd", pids)
	}
	// Both processes are charged to the pod's host cgroup.
	if got := cg.added(); !reflect.DeepEqual(got, []int{pids[1], pids[0]}) {
		t.Errorf("cgroup received pids %v, want virtiofsd %d then cloud-hypervisor %d", got, pids[1], pids[0])
	}

	// What the process was started with.
	args, err := os.ReadFile(filepath.Join(e.dir, "vmm.args"))
	must(t, err)
	wantArgs := []string{"--api-socket", "path=" + filepath.Join(e.cfg.StateDir, "api.sock"), "--event-monitor", "fd=3", "-v"}
	if got := strings.Fields(string(args)); !reflect.DeepEqual(got, wantArgs) {
		t.Errorf("cloud-hypervisor args = %q, want %q", got, wantArgs)
	}
	fsdArgs, err := os.ReadFile(filepath.Join(e.dir, "virtiofsd.args"))
	must(t, err)
	if !strings.Contains(string(fsdArgs), "--shared-dir="+e.cfg.SharedDir) {
		t.Errorf("virtiofsd args = %q", fsdArgs)
	}

	// vm.create's body: what the design needs, from the config.
	var created vmConfig
	must(t, json.Unmarshal(e.fake.body("vm.create"), &created))
	sd := e.cfg.StateDir
	if created.Cpus != (cpusConfig{BootVCPUs: 1, MaxVCPUs: 4}) ||
		created.Memory != (memoryConfig{Size: 256 << 20, HotplugSize: 512 << 20, Shared: true}) ||
		created.Payload.Kernel != e.cfg.KernelPath || created.Payload.Initramfs != e.cfg.InitrdPath ||
		!strings.HasSuffix(created.Payload.Cmdline, " podvm.test=1") ||
		created.Fs[0].Socket != filepath.Join(sd, "virtiofsd.sock") || created.Fs[0].Tag != "podvm" ||
		created.Vsock.Socket != filepath.Join(sd, "vsock.sock") || created.Vsock.CID != 3 ||
		created.Serial.File != "/proc/self/fd/4" {
		t.Errorf("vm.create body = %s", e.fake.body("vm.create"))
	}
	var net0 netConfig
	must(t, json.Unmarshal(e.fake.body("vm.add-net"), &net0))
	if net0.MAC != "02:42:ac:11:00:02" {
		t.Errorf("vm.add-net body = %s", e.fake.body("vm.add-net"))
	}
	got := e.fake.receivedNetFiles()
	if len(got) != 1 || !sameFile(t, tapFile, got[0]) {
		t.Errorf("the VMM did not receive the tap fd: %v", got)
	}

	info := v.Info()
	if info.Driver != "cloud-hypervisor" || info.Accelerator != hypervisor.AccelKVM || info.Transport != contract.TransportVsock ||
		!strings.Contains(info.TransportReason, "hybrid vsock") || info.ConsolePath != filepath.Join(sd, "console.log") ||
		info.StartedAt.IsZero() || info.VCPUs != 1 || info.MemoryMiB != 256 {
		t.Errorf("Info = %+v", info)
	}

	// The agent channel: refused twice while the "agent" starts, then a
	// stream that carries bytes both ways; a second one at the same time.
	c := dialAgent(t, v)
	defer c.Close()
	c2 := dialAgent(t, v)
	c2.Close()

	st, err := v.State(context.Background())
	if err != nil || st != "Running" {
		t.Errorf("State = %q, %v", st, err)
	}
	must(t, v.Resize(context.Background(), 2, 768))
	if i := v.Info(); i.VCPUs != 2 || i.MemoryMiB != 768 {
		t.Errorf("Info after resize = %+v", i)
	}
	if b := string(e.fake.body("vm.resize")); b != `{"desired_vcpus":2,"desired_ram":805306368}` {
		t.Errorf("vm.resize body = %s", b)
	}
	must(t, v.Resize(context.Background(), 2, 768)) // no change: no call
	if err := v.Resize(context.Background(), 8, 768); !errors.Is(err, hypervisor.ErrNotSupported) {
		t.Errorf("resize beyond max_vcpus: %v", err)
	}

	must(t, v.Stop(context.Background()))
	assertTornDown(t, v, pids)
	if v.ExitError() != nil {
		t.Errorf("ExitError after Stop = %v", v.ExitError())
	}
	must(t, v.Stop(context.Background())) // idempotent

	want := []string{
		"GET vmm.ping", "PUT vm.create", "PUT vm.add-net", "PUT vm.boot", "GET vm.info", // boot
		"GET vm.info",                                          // State
		"PUT vm.resize",                                        // Resize
		"PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown", // teardown
	}
	if got := e.fake.callLog(); !reflect.DeepEqual(got, want) {
		t.Errorf("API calls =\n %q\nwant\n %q", got, want)
	}
	assertNoSchemaErrors(t, e.fake)
}

// recordingCgroup is a hypervisor.Cgroup that records what it is given.
type recordingCgroup struct {
	mu   sync.Mutex
	pids []int
}

func (c *recordingCgroup) Add(pid int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pids = append(c.pids, pid)
	return nil
}

func (c *recordingCgroup) added() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.pids...)
}

// dialAgent opens an agent stream and checks it end to end.
func dialAgent(t *testing.T, v *VM) *bufioConn {
	t.Helper()
	c, err := v.DialAgent(context.Background())
	if err != nil {
		t.Fatalf("DialAgent: %v", err)
	}
	bc := &bufioConn{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if l, _ := bc.r.ReadString('\n'); l != fakeAgentGreeting+"\n" {
		t.Errorf("agent greeting %q", l)
	}
	c.Write([]byte("hello\n"))
	if l, _ := bc.r.ReadString('\n'); l != "echo hello\n" {
		t.Errorf("agent echo %q", l)
	}
	return bc
}

type bufioConn struct {
	c interface{ Close() error }
	r *bufio.Reader
}

func (b *bufioConn) Close() error { return b.c.Close() }

// An API error during start surfaces with the VMM's words and the step, and
// the start is undone: the VMM is asked to go, then killed, virtiofsd
// stopped, sockets removed.
func TestStartSurfacesAPIErrors(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name      string
		op        string
		status    int
		body      string
		want      []string
		lastCalls []string
	}{
		{"vm.create refused", "vm.create", 500,
			chErrorBody("Error from API", "The VM could not be created", "Error validating configuration", "Memory size must be a multiple of 4 KiB"),
			[]string{"create the VM: PUT vm.create: HTTP 500 Internal Server Error: Error from API: The VM could not be created: Error validating configuration: Memory size must be a multiple of 4 KiB"},
			[]string{"PUT vm.create", "PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown"}},
		{"vm.add-net refused", "vm.add-net", 500,
			chErrorBody("Error from API", "The network device could not be added to the VM", "Failed to open tap: TUNSETIFF: Invalid argument"),
			[]string{"add network device 0: PUT vm.add-net: HTTP 500", "Failed to open tap: TUNSETIFF: Invalid argument"},
			[]string{"PUT vm.create", "PUT vm.add-net", "PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown"}},
		{"vm.boot fails", "vm.boot", 500,
			chErrorBody("Error from API", "The VM could not boot", "Error creating vCPU", "KVM_CREATE_VCPU: Operation not permitted (os error 1)"),
			[]string{"boot the VM: PUT vm.boot: HTTP 500 Internal Server Error", "KVM_CREATE_VCPU: Operation not permitted"},
			[]string{"PUT vm.boot", "PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown"}},
		{"vm.boot, older error text", "vm.boot", 500, "VmBoot(VmNotCreated)",
			[]string{"PUT vm.boot: HTTP 500 Internal Server Error: VmBoot(VmNotCreated)"},
			[]string{"PUT vm.boot", "PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown"}},
		{"vm.info fails after boot", "vm.info", 500, chErrorBody("Error from API", "VM is not created"),
			[]string{"after boot: GET vm.info: HTTP 500"},
			[]string{"GET vm.info", "PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown"}},
		{"vm.info says not running", "vm.info", 200,
			`{"config": {"payload": {"kernel": "/k"}}, "state": "Shutdown"}`,
			[]string{`after boot the VM is "Shutdown", not Running`},
			[]string{"GET vm.info", "PUT vm.shutdown", "PUT vm.delete", "PUT vmm.shutdown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv(t, true)
			tap, err := os.CreateTemp(e.dir, "tap")
			must(t, err)
			defer tap.Close()
			e.cfg.Net = []hypervisor.NetDevice{{Tap: tap, VnetHdr: true, MAC: "02:00:00:00:00:01"}}
			e.fake.answer(tt.op, tt.status, tt.body)
			vm, err := e.driver().Create(context.Background(), e.cfg)
			must(t, err)
			v := vm.(*VM)
			err = v.Start(context.Background())
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			for _, w := range append(tt.want, "cloud-hypervisor: start sandbox "+e.cfg.ID) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start error:\n %v\nwant it to contain\n %q", err, w)
				}
			}
			var apiErr *APIError
			if wantAPIErr := tt.status != 200; errors.As(err, &apiErr) != wantAPIErr {
				t.Errorf("Start error wraps *APIError: %v, want %v: %v", !wantAPIErr, wantAPIErr, err)
			}
			assertTornDown(t, v, nil)
			if len(v.Pids()) != 0 || v.ExitError() == nil {
				t.Errorf("after a failed Start: Pids %v, ExitError %v", v.Pids(), v.ExitError())
			}
			calls := e.fake.callLog()
			if len(calls) < len(tt.lastCalls) || !reflect.DeepEqual(calls[len(calls)-len(tt.lastCalls):], tt.lastCalls) {
				t.Errorf("API calls = %q, want them to end with %q", calls, tt.lastCalls)
			}
			assertNoSchemaErrors(t, e.fake)
		})
	}
}

// A VMM that never binds its API socket, or binds it and never answers,
// fails Start within its bounds; nothing is left running.
func TestStartVMMUnresponsive(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name    string
		serve   bool
		hang    string
		start   time.Duration
		want    string
		maxTook time.Duration
	}{
		{"never listens", false, "", 500 * time.Millisecond,
			"waiting for the API socket", 4 * time.Second},
		{"never answers vmm.ping", true, "vmm.ping", 5 * time.Second,
			"waiting for the API: GET vmm.ping: no answer from the VMM within", 5 * time.Second},
		{"never answers vm.boot", true, "vm.boot", 5 * time.Second,
			"boot the VM: PUT vm.boot: no answer from the VMM within", 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv(t, tt.serve)
			e.opts.StartTimeout, e.opts.APITimeout, e.opts.StopTimeout = tt.start, 500*time.Millisecond, 300*time.Millisecond
			if tt.hang != "" {
				e.fake.hang(tt.hang)
			}
			vm, err := e.driver().Create(context.Background(), e.cfg)
			must(t, err)
			v := vm.(*VM)
			start := time.Now()
			err = v.Start(context.Background())
			took := time.Since(start)
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			t.Logf("Start failed after %v: %v", took.Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant %q", err, tt.want)
			}
			if took > tt.maxTook {
				t.Errorf("Start took %v", took)
			}
			assertTornDown(t, v, nil)
		})
	}
}

// Cancelling Start's ctx stops what it launched.
func TestStartCancelled(t *testing.T) {
	checkNoLeaks(t)
	e := newFakeEnv(t, true)
	e.fake.hang("vm.create")
	vm, err := e.driver().Create(context.Background(), e.cfg)
	must(t, err)
	v := vm.(*VM)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err = v.Start(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start error does not wrap context.Canceled: %v", err)
	}
	assertTornDown(t, v, nil)
}

// Each way a running VM can die closes Done at once with a reason that
// names who died and how, kills what is left, and keeps the reason after
// Stop.
func TestDeathIsDetected(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name string
		kill func(t *testing.T, e *fakeEnv, pids []int)
		want []string
	}{
		{"cloud-hypervisor killed", func(t *testing.T, e *fakeEnv, pids []int) {
			must(t, syscall.Kill(pids[0], syscall.SIGKILL))
		}, []string{"cloud-hypervisor for sandbox %s exited unexpectedly: signal: killed"}},
		{"cloud-hypervisor exits by itself", func(t *testing.T, e *fakeEnv, pids []int) {
			e.fake.exitProcess()
		}, []string{"cloud-hypervisor for sandbox %s exited unexpectedly: exit status 0 (the guest powered off"}},
		{"virtiofsd killed", func(t *testing.T, e *fakeEnv, pids []int) {
			must(t, syscall.Kill(pids[1], syscall.SIGKILL))
		}, []string{"virtiofsd for sandbox %s exited unexpectedly: signal: killed (the guest lost its shared directory"}},
		{"guest reboots", func(t *testing.T, e *fakeEnv, pids []int) {
			must(t, os.WriteFile(filepath.Join(e.cfg.StateDir, "console.log"),
				[]byte("[    1.0] Kernel panic - not syncing: Attempted to kill init!\n[    1.1] Rebooting in -1 seconds..\n"), 0o644))
			must(t, e.fake.sendEvent("vm", "rebooting"))
		}, []string{"cloud-hypervisor for sandbox %s: the guest rebooted or panicked",
			"last lines of console.log", "Attempted to kill init"}},
		{"guest panics (pvpanic)", func(t *testing.T, e *fakeEnv, pids []int) {
			must(t, e.fake.sendEvent("vm", "booted")) // harmless events first
			must(t, e.fake.sendEvent("guest", "panic"))
		}, []string{"the guest kernel panicked (pvpanic)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv(t, true)
			v := startFakeVM(t, e)
			pids := v.Pids()
			if len(pids) != 2 {
				t.Fatalf("Pids = %v", pids)
			}
			waitEventsOpen(t, e.fake)
			killed := time.Now()
			tt.kill(t, e, pids)
			var err error
			select {
			case <-v.Done():
				err = v.ExitError()
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed within 5s")
			}
			t.Logf("Done %v after the death: %v", time.Since(killed).Round(time.Microsecond), err)
			for _, w := range tt.want {
				if strings.Contains(w, "%s") {
					w = strings.Replace(w, "%s", e.cfg.ID, 1)
				}
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("ExitError = %v\nwant it to contain %q", err, w)
				}
			}
			assertProcessesGone(t, pids)
			if _, err := v.DialAgent(context.Background()); err == nil || !strings.Contains(err.Error(), "VM has exited") {
				t.Errorf("DialAgent after death: %v", err)
			}
			must(t, v.Stop(context.Background()))
			assertTornDown(t, v, pids)
			if v.ExitError() == nil {
				t.Error("Stop after death cleared ExitError")
			}
			assertNoSchemaErrors(t, e.fake)
		})
	}
}

// waitEventsOpen waits until the fake has the events fifo open, so that
// events (and the fake process's exit) can be driven.
func waitEventsOpen(t *testing.T, f *fakeVMM) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		open := f.events != nil
		f.mu.Unlock()
		if open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake never opened its events fifo")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A VMM that stops answering is still stopped, within StopTimeout plus the
// kill, and the calls after the hung one are not even sent.
func TestStopHungVMM(t *testing.T) {
	checkNoLeaks(t)
	e := newFakeEnv(t, true)
	e.opts.StopTimeout = 500 * time.Millisecond
	v := startFakeVM(t, e)
	pids := v.Pids()
	e.fake.hang("vm.shutdown")
	start := time.Now()
	must(t, v.Stop(context.Background()))
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Stop took %v", took)
	}
	assertTornDown(t, v, pids)
	calls := e.fake.callLog()
	if last := calls[len(calls)-1]; last != "PUT vm.shutdown" {
		t.Errorf("calls = %q, want the hung vm.shutdown last", calls)
	}
	if v.ExitError() != nil {
		t.Errorf("a requested Stop reported %v", v.ExitError())
	}
}

// Resize refused by the VMM (a CPU removal still pending) surfaces its
// answer; the VM's size is unchanged.
func TestResizeAPIError(t *testing.T) {
	checkNoLeaks(t)
	e := newFakeEnv(t, true)
	e.opts.MaxVCPUs = 4
	v := startFakeVM(t, e)
	e.fake.answer("vm.resize", 429, chErrorBody("Too Many Requests"))
	err := v.Resize(context.Background(), 3, 256)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 429 || !strings.Contains(err.Error(), "resize to 3 vCPUs, 256 MiB: PUT vm.resize: HTTP 429") {
		t.Errorf("err = %v", err)
	}
	if v.Info().VCPUs != 1 {
		t.Errorf("VCPUs after a refused resize = %d", v.Info().VCPUs)
	}
	if !slices.Contains(e.fake.callLog(), "PUT vm.resize") {
		t.Error("vm.resize not called")
	}
	assertNoSchemaErrors(t, e.fake)
}
