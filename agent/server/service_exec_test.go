package server

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// execProcess is the OCI Process of an exec, as containerd sends it.
func execProcess(t *testing.T, args ...string) []byte {
	return marshalSpec(t, &specs.Process{Args: args, Env: []string{"PATH=/bin", "TERM=xterm"}, Cwd: "/"})
}

func (a *agent) exec(t *testing.T, req *api.ExecProcessRequest) {
	t.Helper()
	if _, err := a.ExecProcess(ctxTimeout(t), req); err != nil {
		t.Fatalf("ExecProcess %s in %s: %v", req.ExecId, req.ContainerId, err)
	}
}

func (a *agent) waitExec(t *testing.T, id, execID string) *api.WaitProcessResponse {
	t.Helper()
	resp, err := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		t.Fatalf("WaitProcess %s/%s: %v", id, execID, err)
	}
	return resp
}

// stillRunning fails if the process exits within a short while.
func (a *agent) stillRunning(t *testing.T, id, execID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	resp, err := a.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: id, ExecId: execID})
	if err == nil {
		t.Fatalf("%s/%s exited with %d; want it running", id, execID, resp.ExitStatus)
	}
}

// TestServiceRunc_Exec runs exec processes beside a container's init: with
// output and an exit code, with stdin, signalled, and one left running when
// the init dies, which must end with it.
func TestServiceRunc_Exec(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "exec-target"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, busyboxRootfs(t), "sleep", "100")}, true)

	a.exec(t, &api.ExecProcessRequest{ContainerId: id, ExecId: "out",
		Process: execProcess(t, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5"), Stdout: true, Stderr: true})
	var stdout, stderr string
	var wg sync.WaitGroup
	wg.Go(func() { stdout = a.readAllExec(t, id, "out", false) })
	wg.Go(func() { stderr = a.readAllExec(t, id, "out", true) })
	wg.Wait()
	if stdout != "to-stdout\n" || stderr != "to-stderr\n" {
		t.Errorf("exec stdout %q stderr %q", stdout, stderr)
	}
	waited := a.waitExec(t, id, "out")
	if waited.ExitStatus != 5 {
		t.Errorf("exec exit status %d, want 5", waited.ExitStatus)
	}
	checkProcessMarks(t, waited.Marks)
	// Exec IDs stay taken after the process ended, as in containerd.
	_, err := a.ExecProcess(ctxTimeout(t), &api.ExecProcessRequest{ContainerId: id, ExecId: "out", Process: execProcess(t, "true")})
	wantCode(t, err, codes.AlreadyExists, "out")

	a.exec(t, &api.ExecProcessRequest{ContainerId: id, ExecId: "cat", Process: execProcess(t, "cat"), Stdin: true, Stdout: true})
	if _, err := a.WriteStdin(ctxTimeout(t), &api.WriteStreamRequest{ContainerId: id, ExecId: "cat", Data: []byte("ping\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CloseStdin(ctxTimeout(t), &api.CloseStdinRequest{ContainerId: id, ExecId: "cat"}); err != nil {
		t.Fatal(err)
	}
	if out := a.readAllExec(t, id, "cat", false); out != "ping\n" {
		t.Errorf("cat echoed %q", out)
	}
	if s := a.waitExec(t, id, "cat").ExitStatus; s != 0 {
		t.Errorf("cat exited %d", s)
	}

	a.exec(t, &api.ExecProcessRequest{ContainerId: id, ExecId: "term", Process: execProcess(t, "sleep", "100")})
	if _, err := a.SignalProcess(ctxTimeout(t), &api.SignalProcessRequest{ContainerId: id, ExecId: "term", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if s := a.waitExec(t, id, "term").ExitStatus; s != 128+15 {
		t.Errorf("signalled exec exited %d, want %d", s, 128+15)
	}
	a.stillRunning(t, id, "") // the init is not touched by its execs' signals

	// An exec still running when the init dies ends with it.
	a.exec(t, &api.ExecProcessRequest{ContainerId: id, ExecId: "orphan", Process: execProcess(t, "sleep", "100")})
	orphan := make(chan uint32, 1)
	go func() { orphan <- a.waitExec(t, id, "orphan").ExitStatus }()
	if _, err := a.SignalProcess(ctxTimeout(t), &api.SignalProcessRequest{ContainerId: id, Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if s := a.wait(t, id); s != 137 {
		t.Errorf("init exited %d", s)
	}
	select {
	case s := <-orphan:
		if s != 137 {
			t.Errorf("orphaned exec exited %d, want 137", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitProcess of an exec did not return after its container's init died")
	}

	_, err = a.ExecProcess(ctxTimeout(t), &api.ExecProcessRequest{ContainerId: id, ExecId: "late", Process: execProcess(t, "true")})
	wantCode(t, err, codes.FailedPrecondition, id)
	_, err = a.ReadStdout(ctxTimeout(t), &api.ReadStreamRequest{ContainerId: id, ExecId: "never"})
	wantCode(t, err, codes.NotFound, "never")
	a.remove(t, id)
}

func TestServiceRunc_ExecInvalid(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "exec-invalid"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, busyboxRootfs(t), "sleep", "100")}, true)
	tests := []struct {
		name   string
		execID string
		proc   []byte
		code   codes.Code
	}{
		{"bad exec id", "../x", execProcess(t, "true"), codes.InvalidArgument},
		{"bad json", "e1", []byte("{"), codes.InvalidArgument},
		{"no args", "e2", []byte(`{"cwd":"/"}`), codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.ExecProcess(ctxTimeout(t), &api.ExecProcessRequest{ContainerId: id, ExecId: tt.execID, Process: tt.proc})
			wantCode(t, err, tt.code, id)
		})
	}
	// runc's own refusal comes back with its message.
	_, err := a.ExecProcess(ctxTimeout(t), &api.ExecProcessRequest{ContainerId: id, ExecId: "e3", Process: execProcess(t, "/no/such/binary")})
	if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("exec of a missing binary: %v", err)
	}
	_, err = a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: id, ExecId: "e3"})
	wantCode(t, err, codes.NotFound, "e3")
}

// TestServiceRunc_ExecTerminal runs an exec on a pty and resizes it.
func TestServiceRunc_ExecTerminal(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "exec-tty"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, OciSpec: testSpec(t, busyboxRootfs(t), "sleep", "100")}, true)

	_, err := a.ResizeTTY(ctxTimeout(t), &api.ResizeTTYRequest{ContainerId: id, Width: 80, Height: 24})
	wantCode(t, err, codes.FailedPrecondition, id)
	_, err = a.ResizeTTY(ctxTimeout(t), &api.ResizeTTYRequest{ContainerId: id, ExecId: "none", Width: 80, Height: 24})
	wantCode(t, err, codes.NotFound, "none")

	a.exec(t, &api.ExecProcessRequest{ContainerId: id, ExecId: "sh", Terminal: true, Stdin: true, Stdout: true,
		Process: execProcess(t, "sh", "-c", "tty; read a; stty size; read b; stty size; exit 4")})
	a.resizeAndCheck(t, id, "sh", "/dev/pts/", 132, 43)
	a.resizeAndCheck(t, id, "sh", "", 100, 30)
	if s := a.waitExec(t, id, "sh").ExitStatus; s != 4 {
		t.Errorf("exec on a terminal exited %d, want 4", s)
	}
	_, err = a.ResizeTTY(ctxTimeout(t), &api.ResizeTTYRequest{ContainerId: id, ExecId: "sh", Width: 80, Height: 24})
	wantCode(t, err, codes.FailedPrecondition, "sh")
}

// TestServiceRunc_InitTerminalResize resizes the init's terminal.
func TestServiceRunc_InitTerminalResize(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "init-tty"
	a.run(t, &api.CreateContainerRequest{ContainerId: id, Terminal: true, Stdin: true, Stdout: true,
		OciSpec: testSpec(t, busyboxRootfs(t), "sh", "-c", "read a; stty size")}, true)
	a.resizeAndCheck(t, id, "", "", 90, 33)
	if s := a.wait(t, id); s != 0 {
		t.Errorf("exit status %d", s)
	}
}

// resizeAndCheck resizes the terminal, then lets the process (blocked in
// `read`) run `stty size` and looks for the new size in its output, after
// want, if given, was seen first.
func (a *agent) resizeAndCheck(t *testing.T, id, execID, want string, width, height uint32) {
	t.Helper()
	if want != "" {
		a.readUntil(t, id, execID, want)
	}
	if _, err := a.ResizeTTY(ctxTimeout(t), &api.ResizeTTYRequest{ContainerId: id, ExecId: execID, Width: width, Height: height}); err != nil {
		t.Fatalf("ResizeTTY: %v", err)
	}
	if _, err := a.WriteStdin(ctxTimeout(t), &api.WriteStreamRequest{ContainerId: id, ExecId: execID, Data: []byte("go\n")}); err != nil {
		t.Fatal(err)
	}
	a.readUntil(t, id, execID, strings.Join([]string{itoa(height), itoa(width)}, " "))
}

// readUntil reads stdout until it has seen want.
func (a *agent) readUntil(t *testing.T, id, execID, want string) {
	t.Helper()
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		r, err := a.ReadStdout(ctxTimeout(t), &api.ReadStreamRequest{ContainerId: id, ExecId: execID, Len: 256})
		if err != nil || r.Eof {
			t.Fatalf("reading for %q, got %q then eof %v, %v", want, out.String(), r.GetEof(), err)
		}
		out.Write(r.Data)
	}
}

func itoa(n uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestServiceRunc_PodNamespaces runs a pod the way the shim sets it up in
// the guest: no network namespace in any spec (all use the root one), and
// the app container joining the sandbox container's IPC, UTS and PID
// namespaces by /proc/<pid>/ns paths, with the pod's hostname in both.
func TestServiceRunc_PodNamespaces(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	rootfs := busyboxRootfs(t)
	sandbox := baseSpec(rootfs, "sleep", "100")
	sandbox.Hostname = "pod-host"
	sandbox.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
	resp, err := a.CreateContainer(ctxTimeout(t), &api.CreateContainerRequest{ContainerId: "pod-sandbox", OciSpec: marshalSpec(t, sandbox)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.StartContainer(ctxTimeout(t), &api.StartContainerRequest{ContainerId: "pod-sandbox"}); err != nil {
		t.Fatal(err)
	}
	ns := func(typ string) string { return "/proc/" + itoa(resp.Pid) + "/ns/" + typ }

	app := baseSpec(rootfs, "sleep", "100")
	app.Hostname = "pod-host"
	app.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: ns("pid")}, {Type: specs.IPCNamespace, Path: ns("ipc")},
		{Type: specs.UTSNamespace, Path: ns("uts")}, {Type: specs.MountNamespace},
	}
	a.run(t, &api.CreateContainerRequest{ContainerId: "pod-app", OciSpec: marshalSpec(t, app)}, true)

	a.exec(t, &api.ExecProcessRequest{ContainerId: "pod-app", ExecId: "look", Stdout: true,
		Process: execProcess(t, "sh", "-c", "hostname; cat /proc/1/cmdline; echo; for n in ipc uts pid net; do readlink /proc/self/ns/$n; done")})
	out := strings.Split(strings.TrimSpace(a.readAllExec(t, "pod-app", "look", false)), "\n")
	var want []string
	for _, typ := range []string{"ipc", "uts", "pid"} {
		l, err := os.Readlink(ns(typ))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, l)
	}
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	want = append([]string{"pod-host", "sleep\x00100\x00"}, append(want, hostNet)...)
	if strings.Join(out, "|") != strings.Join(want, "|") {
		t.Errorf("inside the app container:\n got %q\nwant %q", out, want)
	}

	// In the shared pid namespace the kernel does not end an exec with
	// its container's init; the agent does.
	a.exec(t, &api.ExecProcessRequest{ContainerId: "pod-app", ExecId: "lingering", Process: execProcess(t, "sleep", "100")})
	if _, err := a.SignalProcess(ctxTimeout(t), &api.SignalProcessRequest{ContainerId: "pod-app", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if s := a.waitExec(t, "pod-app", "lingering").ExitStatus; s != 137 {
		t.Errorf("exec in the shared pid namespace exited %d, want 137", s)
	}
	a.stillRunning(t, "pod-sandbox", "")
	a.remove(t, "pod-app")
}

func TestServiceRunc_ListProcesses(t *testing.T) {
	a := startAgent(t, requireRunc(t))
	const id = "ps"
	resp, err := a.CreateContainer(ctxTimeout(t), &api.CreateContainerRequest{ContainerId: id,
		OciSpec: testSpec(t, busyboxRootfs(t), "sh", "-c", "sleep 100 & sleep 100 & wait")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.StartContainer(ctxTimeout(t), &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := a.ListProcesses(ctxTimeout(t), &api.ListProcessesRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		hasInit := false
		for _, pid := range r.Pids {
			hasInit = hasInit || pid == resp.Pid
		}
		if len(r.Pids) == 3 && hasInit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListProcesses = %v; want the init %d and two sleeps", r.Pids, resp.Pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err = a.ListProcesses(ctxTimeout(t), &api.ListProcessesRequest{ContainerId: "nope"})
	wantCode(t, err, codes.NotFound, "nope")
}

// checkProcessMarks wants an exec's four marks, in the contract's order,
// at non-decreasing times.
func checkProcessMarks(t *testing.T, marks []*api.GuestMark) {
	t.Helper()
	var names []string
	for i, m := range marks {
		names = append(names, m.Name)
		if i > 0 && m.BoottimeNs < marks[i-1].BoottimeNs {
			t.Errorf("mark %s at %d, before %s at %d", m.Name, m.BoottimeNs, marks[i-1].Name, marks[i-1].BoottimeNs)
		}
	}
	if want := contract.ProcessMarks; !slices.Equal(names, want) {
		t.Errorf("exec marks %v, want %v", names, want)
	}
}
