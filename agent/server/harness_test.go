package server

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
	"github.com/podvm/podvm/agent/reaper"
)

// hostRunc is where ci/install-tools.sh puts the host build of runc;
// PODVM_TEST_RUNC overrides it.
const hostRunc = "/var/cache/podvm/tools/runc-v1.5.2/bin/runc"

// agent is a service under test, served on a unix socket like the shim
// would reach it, with a real ttrpc client.
type agent struct {
	api.AgentServiceService
	cfg container.Config
}

// startAgent serves a Service on a unix socket. Container state goes to
// temporary directories; cleanup destroys the sandbox, which kills and
// removes any container a test left behind.
func startAgent(t *testing.T, runcPath string) *agent {
	t.Helper()
	return startAgentWith(t, runcPath, nil)
}

// startAgentWith is startAgent with a hook to change the service's config.
func startAgentWith(t *testing.T, runcPath string, configure func(*Config)) *agent {
	t.Helper()
	return startAgentConfig(t, runcPath, nil, configure)
}

// startAgentConfig is startAgentWith with a hook to change the container
// manager's config too.
func startAgentConfig(t *testing.T, runcPath string, containers func(*container.Config), configure func(*Config)) *agent {
	t.Helper()
	if err := reaper.Start(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := container.Config{
		Runc:      runcPath,
		StateDir:  filepath.Join(dir, "runc"),
		BundleDir: filepath.Join(dir, "containers"),
	}
	if containers != nil {
		containers(&cfg)
	}
	// PODVM_TEST_CRUN=/usr/bin/crun runs the tests with crun instead.
	crun := os.Getenv("PODVM_TEST_CRUN")
	cfg.Crun = crun
	exits := reaper.Subscribe()
	mgr := container.NewManager(cfg, exits)
	if crun != "" {
		if err := mgr.SetRuntime("crun"); err != nil {
			t.Fatal(err)
		}
	}
	svcCfg := Config{Containers: mgr, StartedNs: 1}
	if configure != nil {
		configure(&svcCfg)
	}
	svc := New(svcCfg)
	svc.SetReady("unix", 2)
	srv, err := NewServer(svc)
	if err != nil {
		t.Fatal(err)
	}
	// A short socket path: t.TempDir paths can outgrow sun_path.
	sockDir, err := os.MkdirTemp("", "podvm-agent")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(sockDir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	a := &agent{AgentServiceService: api.NewAgentServiceClient(client), cfg: cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := a.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
			t.Errorf("cleanup: DestroySandbox: %v", err)
		}
		client.Close()
		srv.Close()
		reaper.Unsubscribe(exits)
		os.RemoveAll(sockDir)
	})
	return a
}

// requireRunc skips unless the test can run containers: root, and the
// host runc binary.
func requireRunc(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runc creates namespaces and cgroups")
	}
	path := hostRunc
	if p := os.Getenv("PODVM_TEST_RUNC"); p != "" {
		path = p
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("runc not found at %s (build it with ci/install-tools.sh runc, or set PODVM_TEST_RUNC): %v", path, err)
	}
	return path
}

// busyboxRootfs makes a root filesystem of the static busybox with links for
// the applets the tests run.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	const busybox = "/bin/busybox"
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Skipf("needs busybox-static at %s: %v", busybox, err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "cat", "echo", "sleep", "true", "tty", "dd", "stty", "hostname", "readlink", "head"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testSpec is a spec like `runc spec` makes, with its own pid, network,
// ipc, uts and mount namespaces, so the container touches nothing of the
// host's but its cgroup.
func testSpec(t *testing.T, rootfs string, args ...string) []byte {
	t.Helper()
	return marshalSpec(t, baseSpec(rootfs, args...))
}

// baseSpec is testSpec before encoding, for tests that change it.
func baseSpec(rootfs string, args ...string) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "podvm-test",
		Process: &specs.Process{
			Args:            args,
			Env:             []string{"PATH=/bin", "TERM=xterm"},
			Cwd:             "/",
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	return spec
}

func marshalSpec(t *testing.T, spec any) []byte {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ctxTimeout is a context for one step of a test.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readAll reads a stream until eof.
func (a *agent) readAll(t *testing.T, id string, stderr bool) string {
	t.Helper()
	return a.readAllExec(t, id, "", stderr)
}

// readAllExec reads a stream of an exec process until eof.
func (a *agent) readAllExec(t *testing.T, id, execID string, stderr bool) string {
	t.Helper()
	read := a.ReadStdout
	if stderr {
		read = a.ReadStderr
	}
	var out strings.Builder
	for {
		resp, err := read(ctxTimeout(t), &api.ReadStreamRequest{ContainerId: id, ExecId: execID, Len: 4})
		if err != nil {
			t.Errorf("read %s (stderr %v): %v", id, stderr, err)
			return out.String()
		}
		out.Write(resp.Data)
		if resp.Eof {
			return out.String()
		}
	}
}

// wantCode fails unless err is a ttrpc status with code, and its message
// names the container.
func wantCode(t *testing.T, err error, code codes.Code, id string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error %v: want code %v", err, code)
	}
	if id != "" && !strings.Contains(st.Message(), id) {
		t.Fatalf("error message %q does not name %s", st.Message(), id)
	}
}
