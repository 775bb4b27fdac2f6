package server

import (
	"context"
	"os"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
)

func TestService_GuestDetails(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	d, err := a.GuestDetails(ctxTimeout(t), &api.GuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.AgentVersion != Version || d.Transport != "unix" || d.AgentStartedNs != 1 || d.AgentReadyNs != 2 {
		t.Errorf("version %q transport %q phases %d/%d", d.AgentVersion, d.Transport, d.AgentStartedNs, d.AgentReadyNs)
	}
	// NowNs is this machine's CLOCK_BOOTTIME here: after the phases the
	// harness set (1 and 2 ns) and never 0.
	if d.NowNs <= d.AgentReadyNs {
		t.Errorf("now %d ns is not after ready %d ns", d.NowNs, d.AgentReadyNs)
	}
	if d.KernelRelease == "" || len(d.BootId) != 36 || d.OnlineCpus == 0 || d.MemoryTotalBytes == 0 {
		t.Errorf("kernel %q boot id %q cpus %d memory %d", d.KernelRelease, d.BootId, d.OnlineCpus, d.MemoryTotalBytes)
	}
}

// TestService_UnknownContainer calls every per-container RPC with an ID the
// agent does not know.
func TestService_UnknownContainer(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	const id = "no-such-container"
	calls := map[string]func(context.Context) error{
		"StartContainer": func(ctx context.Context) error {
			_, err := a.StartContainer(ctx, &api.StartContainerRequest{ContainerId: id})
			return err
		},
		"RemoveContainer": func(ctx context.Context) error {
			_, err := a.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: id})
			return err
		},
		"WaitProcess": func(ctx context.Context) error {
			_, err := a.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: id})
			return err
		},
		"SignalProcess": func(ctx context.Context) error {
			_, err := a.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: id, Signal: 9})
			return err
		},
		"WriteStdin": func(ctx context.Context) error {
			_, err := a.WriteStdin(ctx, &api.WriteStreamRequest{ContainerId: id, Data: []byte("x")})
			return err
		},
		"CloseStdin": func(ctx context.Context) error {
			_, err := a.CloseStdin(ctx, &api.CloseStdinRequest{ContainerId: id})
			return err
		},
		"ReadStdout": func(ctx context.Context) error {
			_, err := a.ReadStdout(ctx, &api.ReadStreamRequest{ContainerId: id})
			return err
		},
		"ReadStderr": func(ctx context.Context) error {
			_, err := a.ReadStderr(ctx, &api.ReadStreamRequest{ContainerId: id})
			return err
		},
		"ExecProcess": func(ctx context.Context) error {
			_, err := a.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: id, ExecId: "e", Process: []byte(`{"args":["true"]}`)})
			return err
		},
		"ResizeTTY": func(ctx context.Context) error {
			_, err := a.ResizeTTY(ctx, &api.ResizeTTYRequest{ContainerId: id, Width: 80, Height: 24})
			return err
		},
		"ListProcesses": func(ctx context.Context) error {
			_, err := a.ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: id})
			return err
		},
		"StatsContainer": func(ctx context.Context) error {
			_, err := a.StatsContainer(ctx, &api.StatsContainerRequest{ContainerId: id})
			return err
		},
		"UpdateContainer": func(ctx context.Context) error {
			_, err := a.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: id, Resources: []byte("{}")})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			wantCode(t, call(ctxTimeout(t)), codes.NotFound, id)
		})
	}
}

func TestService_CreateContainerInvalid(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	missingRoot := []byte(`{"process":{"args":["true"]},"root":{"path":"/nonexistent/podvm/rootfs"}}`)
	tests := []struct {
		name string
		id   string
		spec []byte
		code codes.Code
	}{
		{"bad id", "../escape", missingRoot, codes.InvalidArgument},
		{"bad spec", "c-bad-spec", []byte("{"), codes.InvalidArgument},
		{"no process", "c-no-process", []byte(`{"root":{"path":"/"}}`), codes.InvalidArgument},
		{"missing rootfs", "c-missing-root", missingRoot, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.CreateContainer(ctxTimeout(t), &api.CreateContainerRequest{ContainerId: tt.id, OciSpec: tt.spec})
			wantCode(t, err, tt.code, tt.id)
		})
	}
}

func TestService_CreateSandboxOnHost(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	before, _ := os.Hostname()
	ctx := ctxTimeout(t)
	if _, err := a.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "s1", Hostname: "podvm-would-be"}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Hostname(); after != before {
		t.Fatalf("hostname changed from %q to %q off the guest", before, after)
	}
	_, err := a.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "s2"})
	wantCode(t, err, codes.FailedPrecondition, "s2")

	bad := []*api.SharedFilesystem{
		{Type: "nfs", Tag: "podvm", MountPoint: "/run/podvm/shared"},
		{Type: "virtiofs", Tag: "podvm", MountPoint: "relative/path"},
	}
	for _, fs := range bad {
		_, err := a.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "s1", SharedFs: fs})
		wantCode(t, err, codes.InvalidArgument, "s1")
	}

	// A pids limit needs the pod cgroup it applies to; off the guest it is
	// accepted and the host's cgroups are left alone.
	limit, negative := int64(40), int64(-1)
	_, err = a.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "s1", PidsLimit: &limit})
	wantCode(t, err, codes.InvalidArgument, "pod cgroup")
	_, err = a.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "s1", PodCgroup: "/podvm-test-pod", PidsLimit: &negative})
	wantCode(t, err, codes.InvalidArgument, "pids limit -1")
	if _, err := a.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "s1", PodCgroup: "/podvm-test-pod", PidsLimit: &limit}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/podvm-test-pod"); !os.IsNotExist(err) {
		t.Errorf("the agent off the guest touched the host's cgroups (%v)", err)
	}
}

func TestService_ExecIDUnknown(t *testing.T) {
	// Without a container the container is what is not found; the exec
	// case is covered with a real container in TestServiceRunc_Lifecycle.
	a := startAgent(t, "/nonexistent/runc")
	_, err := a.WaitProcess(ctxTimeout(t), &api.WaitProcessRequest{ContainerId: "c", ExecId: "e"})
	wantCode(t, err, codes.NotFound, "c")
}

func TestCountCPUs(t *testing.T) {
	tests := []struct {
		list string
		want int
	}{
		{"0", 1},
		{"0-3", 4},
		{"0-1,4,6-7", 5},
		{"", 0},
		{"3-1", 0},
	}
	for _, tt := range tests {
		if got := countCPUs(tt.list); got != tt.want {
			t.Errorf("countCPUs(%q) = %d, want %d", tt.list, got, tt.want)
		}
	}
}

func TestReadLen(t *testing.T) {
	tests := []struct {
		in   uint32
		want int
	}{
		{0, defaultReadLen},
		{1, 1},
		{maxReadLen + 1, maxReadLen},
	}
	for _, tt := range tests {
		if got := readLen(tt.in); got != tt.want {
			t.Errorf("readLen(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
