package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/pause"
	"github.com/podvm/podvm/agent/reaper"
)

// TestMain lets the test binary be the native pause too: the Manager
// re-executes itself, as the agent does in the guest.
func TestMain(m *testing.M) {
	if pause.Invoked() {
		pause.Main()
	}
	os.Exit(m.Run())
}

// sandboxSpec is the shape of the pause container spec containerd's CRI
// writes, after the shim's rewrite for the guest.
func sandboxSpec(root, cgroupsPath string) *specs.Spec {
	return &specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: root, Readonly: true},
		Hostname:    "pod-host",
		Annotations: map[string]string{annotationContainerType: "sandbox"},
		Process: &specs.Process{Args: []string{"/pause"}, Cwd: "/", User: specs.User{UID: 65535, GID: 65535},
			NoNewPrivileges: true, OOMScoreAdj: intp(500),
			// containerd's CRI gives a sandbox none; another client may.
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}},
			Sysctl:      map[string]string{"kernel.shm_rmid_forced": "1"},
			CgroupsPath: cgroupsPath,
			Resources:   &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"},
		},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
	}
}

func intp(v int) *int { return &v }

// TestNativeReason: which sandbox specs the agent creates itself, and why
// the others go through the OCI runtime.
func TestNativeReason(t *testing.T) {
	cgroupRoot := "/sys/fs/cgroup"
	if !(Config{}).cgroupV2() {
		cgroupRoot = mountCgroup2(t)
	}
	on := Config{NativeSandbox: true, CgroupRoot: cgroupRoot}
	guest := on
	guest.OwnsNetwork = true
	for _, tc := range []struct {
		name   string
		cfg    Config
		change func(*specs.Spec)
		stdio  Stdio
		want   string // "" native, else a part of the reason
	}{
		{name: "CRI pause", cfg: on},
		{name: "cgroup namespace", cfg: on, change: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		}},
		{name: "uts sysctl", cfg: on, change: func(s *specs.Spec) { s.Linux.Sysctl["kernel.domainname"] = "x" }},
		{name: "mqueue sysctl", cfg: on, change: func(s *specs.Spec) { s.Linux.Sysctl["fs.mqueue.msg_max"] = "20" }},
		// containerd's CRI adds these two to every sandbox spec.
		{name: "net sysctls, the guest's own", cfg: guest, change: func(s *specs.Spec) {
			s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
			s.Linux.Sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
		}},
		{name: "net sysctl off the guest", cfg: on, change: func(s *specs.Spec) { s.Linux.Sysctl["net.ipv4.ip_forward"] = "1" }, want: "net.ipv4.ip_forward"},
		{name: "switched off", cfg: Config{CgroupRoot: cgroupRoot}, want: "off"},
		{name: "app container", cfg: on, change: func(s *specs.Spec) { s.Annotations[annotationContainerType] = "container" }, want: "not a CRI sandbox"},
		{name: "not CRI", cfg: on, change: func(s *specs.Spec) { s.Annotations = nil }, want: "not a CRI sandbox"},
		{name: "stdio", cfg: on, stdio: Stdio{Stdout: true}, want: "stdio"},
		{name: "terminal", cfg: on, stdio: Stdio{Terminal: true}, want: "stdio"},
		{name: "seccomp", cfg: on, change: func(s *specs.Spec) { s.Linux.Seccomp = warmSeccomp() }, want: "seccomp"},
		{name: "rlimits", cfg: on, change: func(s *specs.Spec) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_CORE"})
		}},
		{name: "unknown rlimit", cfg: on, change: func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NEW", Hard: 10, Soft: 10}}
		}, want: "RLIMIT_NEW"},
		{name: "hooks", cfg: on, change: func(s *specs.Spec) { s.Hooks = &specs.Hooks{} }, want: "hooks"},
		{name: "apparmor", cfg: on, change: func(s *specs.Spec) { s.Process.ApparmorProfile = "p" }, want: "LSM"},
		{name: "user namespace pod", cfg: on, change: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}
		}, want: "id mappings"},
		{name: "user namespace", cfg: on, change: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, want: "user namespace"},
		{name: "network namespace", cfg: on, change: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		}, want: "network namespace"},
		{name: "joins a namespace", cfg: on, change: func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/7/ns/ipc" }, want: "joins the ipc"},
		{name: "no mount namespace", cfg: on, change: func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[:3] }, want: "mount namespace"},
		{name: "ipc sysctl without an ipc namespace", cfg: on, change: func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}
		}, want: "kernel.shm_rmid_forced"},
		{name: "global sysctl", cfg: on, change: func(s *specs.Spec) { s.Linux.Sysctl["kernel.pid_max"] = "100" }, want: "kernel.pid_max"},
		{name: "no cgroup v2", cfg: Config{NativeSandbox: true, CgroupRoot: t.TempDir()}, want: "cgroup v2"},
		{name: "intel rdt", cfg: on, change: func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} }, want: "RDT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sandboxSpec("/rootfs", "/podvm/p")
			if tc.change != nil {
				tc.change(s)
			}
			got := nativeReason(tc.cfg, s, tc.stdio)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("nativeReason = %q, want %q", got, tc.want)
			}
		})
	}
}

// mountCgroup2 mounts the cgroup v2 hierarchy on a temporary directory (a
// host with cgroup v1 at /sys/fs/cgroup still has it), or skips.
func mountCgroup2(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
		t.Skipf("needs root to mount cgroup2: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// nativeManager is a Manager with the native sandbox on, in a cgroup v2
// hierarchy of its own when the host's is v1.
func nativeManager(t *testing.T) (*Manager, string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root (namespaces, mounts, cgroups)")
	}
	if err := reaper.Start(); err != nil {
		t.Fatal(err)
	}
	cgroupRoot := "/sys/fs/cgroup"
	if !(Config{}).cgroupV2() {
		cgroupRoot = mountCgroup2(t)
	}
	dir := t.TempDir()
	exits := reaper.Subscribe()
	t.Cleanup(func() { reaper.Unsubscribe(exits) })
	m := NewManager(Config{NativeSandbox: true, CgroupRoot: cgroupRoot, StateDir: filepath.Join(dir, "state"),
		BundleDir: filepath.Join(dir, "bundles")}, exits)
	return m, cgroupRoot
}

// createPause creates a native sandbox container from sandboxSpec.
func createPause(t *testing.T, m *Manager, id string) (*Container, *specs.Spec) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "pause-image-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := sandboxSpec(root, fmt.Sprintf("/podvm-test-%d/%s", os.Getpid(), id))
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Create(context.Background(), CreateRequest{ID: id, Spec: raw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		// Fails while the pause's cgroup is left, or a process in it.
		if err := os.Remove(filepath.Join(m.cfg.cgroupRoot(), filepath.Dir(spec.Linux.CgroupsPath))); err != nil {
			t.Errorf("pod cgroup left: %v", err)
		}
	})
	if c.runtimeName != NativeRuntime {
		t.Fatalf("runtime %q, want %q", c.runtimeName, NativeRuntime)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, spec
}

// TestNativePauseSetup: the pause the agent creates itself has the spec's
// namespaces, hostname, ipc sysctl, cgroup, user and oom_score_adj, no
// capability, and the pause rootfs as its whole root.
func TestNativePauseSetup(t *testing.T) {
	m, cgroupRoot := nativeManager(t)
	c, spec := createPause(t, m, "pause-setup")
	pid := c.Pid()
	for _, ns := range []string{"pid", "ipc", "uts", "mnt"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil || its == mine {
			t.Errorf("%s namespace of the pause %q (%v), the test's %q: want one of its own", ns, its, err, mine)
		}
	}
	if net, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); net != mustReadlink(t, "/proc/self/ns/net") {
		t.Errorf("network namespace %s: want the agent's (the pod's is the guest's)", net)
	}
	hostname, shm := inNamespaces(t, pid)
	if hostname != "pod-host" || shm != "1" {
		t.Errorf("in the pause's namespaces: hostname %q, kernel.shm_rmid_forced %q; want pod-host, 1", hostname, shm)
	}
	status := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
	for _, want := range []string{"Uid:\t65535\t65535\t65535\t65535", "Gid:\t65535\t65535\t65535\t65535",
		"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapAmb:\t0000000000000000"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("pause status lacks %q:\n%s", want, status)
		}
	}
	if got := readFile(t, fmt.Sprintf("/proc/%d/oom_score_adj", pid)); got != "500\n" {
		t.Errorf("oom_score_adj %q, want 500", got)
	}
	if limits := readFile(t, fmt.Sprintf("/proc/%d/limits", pid)); !regexp.MustCompile(`Max open files +1024 +1024 `).MatchString(limits) {
		t.Errorf("the pause's limits lack RLIMIT_NOFILE 1024:\n%s", limits)
	}
	if got := readFile(t, fmt.Sprintf("/proc/%d/cmdline", pid)); got != pause.Arg0+"\x00" {
		t.Errorf("cmdline %q, want %q", got, pause.Arg0)
	}
	procs := readFile(t, filepath.Join(cgroupRoot, spec.Linux.CgroupsPath, "cgroup.procs"))
	if strings.TrimSpace(procs) != fmt.Sprint(pid) {
		t.Errorf("cgroup %s holds %q, want the pause %d alone", spec.Linux.CgroupsPath, procs, pid)
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil || len(entries) != 1 || entries[0].Name() != "pause-image-file" {
		t.Errorf("the pause's root holds %v (%v), want the pause rootfs alone", entries, err)
	}
	probe := fmt.Sprintf("/proc/%d/root/podvm-native-pause-test", pid)
	if err := os.WriteFile(probe, nil, 0o644); !errorsIsROFS(err) {
		t.Errorf("write in the pause's root: %v, want EROFS", err)
		_ = os.Remove(probe)
	}
	if err := c.Exec(context.Background(), ExecRequest{ID: "e1", Process: []byte(`{"args":["true"]}`)}); !errdefs.IsNotImplemented(err) {
		t.Errorf("exec in the native sandbox = %v, want NotImplemented", err)
	}
}

func errorsIsROFS(err error) bool {
	return err != nil && strings.Contains(err.Error(), "read-only file system")
}

// TestNativePauseExits: the task API's view of the pause: SIGTERM ends it
// with 0 as it ends Kubernetes' pause, SIGKILL with 137, and Remove leaves
// no process and no cgroup.
func TestNativePauseExits(t *testing.T) {
	m, cgroupRoot := nativeManager(t)
	for _, tc := range []struct {
		sig  unix.Signal
		all  bool
		want int
	}{{unix.SIGTERM, false, 0}, {unix.SIGKILL, true, 137}, {unix.SIGINT, true, 0}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			id := "pause-" + strings.ReplaceAll(tc.sig.String(), " ", "-")
			c, spec := createPause(t, m, id)
			if c.State() != Running {
				t.Errorf("state %s, want running", c.State())
			}
			p, _ := c.Process("")
			if err := p.Signal(context.Background(), tc.sig, tc.all); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := p.Wait(ctx)
			if err != nil || e.Status != tc.want {
				t.Fatalf("exit %+v (%v), want status %d", e, err, tc.want)
			}
			if err := m.Remove(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(cgroupRoot, spec.Linux.CgroupsPath)); !os.IsNotExist(err) {
				t.Errorf("cgroup %s left after Remove (%v)", spec.Linux.CgroupsPath, err)
			}
		})
	}
}

// TestNativePauseRemoveKills: removing a running pause (DestroySandbox)
// kills it.
func TestNativePauseRemoveKills(t *testing.T) {
	m, _ := nativeManager(t)
	c, _ := createPause(t, m, "pause-shutdown")
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(c.Pid(), 0); err == nil {
		t.Errorf("pause %d still there after Shutdown", c.Pid())
	}
}

// inNamespaces reads the hostname and kernel.shm_rmid_forced in the uts and
// ipc namespaces of pid, from a thread that joins them and then ends.
func inNamespaces(t *testing.T, pid int) (hostname, shm string) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with it
		for _, ns := range []struct {
			file string
			flag int
		}{{"uts", unix.CLONE_NEWUTS}, {"ipc", unix.CLONE_NEWIPC}} {
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.file), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				done <- err
				return
			}
			err = unix.Setns(fd, ns.flag)
			unix.Close(fd)
			if err != nil {
				done <- err
				return
			}
		}
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			done <- err
			return
		}
		hostname = unix.ByteSliceToString(uts.Nodename[:])
		// ipc sysctls are the reading thread's ipc namespace's.
		data, err := os.ReadFile("/proc/sys/kernel/shm_rmid_forced")
		shm = strings.TrimSpace(string(data))
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return hostname, shm
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func mustReadlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNativePauseSetupFails: a pause whose setup fails is reported with its
// reason and leaves no process, cgroup or container.
func TestNativePauseSetupFails(t *testing.T) {
	m, cgroupRoot := nativeManager(t)
	root := t.TempDir()
	spec := sandboxSpec(root, fmt.Sprintf("/podvm-test-%d/bad", os.Getpid()))
	spec.Linux.Sysctl["kernel.msgmax"] = "not a number"
	t.Cleanup(func() { _ = os.Remove(filepath.Join(cgroupRoot, filepath.Dir(spec.Linux.CgroupsPath))) })
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Create(context.Background(), CreateRequest{ID: "bad", Spec: raw})
	if err == nil || !strings.Contains(err.Error(), "sysctl kernel.msgmax") {
		t.Fatalf("Create = %v, want the pause's sysctl failure", err)
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, spec.Linux.CgroupsPath)); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left after the failed create (%v)", spec.Linux.CgroupsPath, err)
	}
	if _, err := m.Get("bad"); !errdefs.IsNotFound(err) {
		t.Errorf("Get after the failed create = %v, want NotFound", err)
	}
}
